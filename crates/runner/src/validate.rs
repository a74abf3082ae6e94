//! An experiment checked against its model: every layer of every cell exists in its tower, and
//! a bottleneck has a block after it; errors name the key's line.
use crate::experiment::{line_of, Experiment, ExperimentError};
use m2ib_clip::ClipConfig;

/// Checks every layer of every cell against the model's depth, naming the key's line.
pub fn validate_layers(
    exp: &Experiment,
    source: &str,
    file: &str,
    config: &ClipConfig,
    defaults_origin: &str,
) -> Result<(), ExperimentError> {
    let depths = [
        config.vision_config.num_hidden_layers as usize,
        config.text_config.num_hidden_layers as usize,
    ];
    for cell in exp.cells() {
        let section = format!("methods.{}", cell.name());
        for (key, v) in cell.params.as_object().into_iter().flatten() {
            let checked =
                m2ib_attribution::registry::check_flat_layer(&cell.method, key, v, depths);
            if let Err((tower, e)) = checked {
                // A key the model's defaults gave is reported against the model's file.
                let line = line_of(source, &section, key);
                return Err(ExperimentError {
                    file: if line == 0 {
                        defaults_origin.into()
                    } else {
                        file.into()
                    },
                    line,
                    message: format!("`{section}.{key}` ({tower} tower): {e}"),
                });
            }
        }
    }
    Ok(())
}
