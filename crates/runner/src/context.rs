//! What every job of a run reads: the experiment, the run directory, the claims, and the samples
//! of each repeat listed once (the experiment's, ROAR+'s training pairs and its validation pairs).
use crate::claims::Claims;
use crate::experiment::Experiment;
use crate::rundir::RunDir;
use crate::samples::{list, Listed};
use crate::seeds::{roar_val_seed, split_seed};

pub struct RunContext<'a> {
    pub exp: &'a Experiment,
    pub dir: RunDir,
    pub git: String,
    /// Per repeat: the experiment's samples and the ROAR+ training pairs.
    pub listed: Vec<Vec<Listed>>,
    pub roar_listed: Vec<Vec<Listed>>,
    /// ROAR+'s fixed validation pairs (`val_n`), the same for every repeat; empty without.
    pub roar_val: Vec<Listed>,
    /// Who runs which job, when several processes share the run directory.
    pub claims: &'a Claims,
}

impl<'a> RunContext<'a> {
    pub fn new(
        exp: &'a Experiment,
        dir: RunDir,
        git: String,
        claims: &'a Claims,
    ) -> Result<RunContext<'a>, String> {
        let listed: Vec<Vec<Listed>> = (0..exp.repeats)
            .map(|r| list(&exp.dataset, split_seed(exp.dataset.seed, r)))
            .collect::<Result<_, _>>()?;
        let roar_val: Vec<Listed> = match &exp.metrics.roar {
            Some(r) if r.val_n.is_some() => list(&r.val_dataset(&exp.dataset), roar_val_seed())?,
            _ => vec![],
        };
        let val_ids: std::collections::HashSet<String> =
            roar_val.iter().flatten().map(|s| s.id.clone()).collect();
        let roar_listed: Vec<Vec<Listed>> = match &exp.metrics.roar {
            None => vec![vec![]; exp.repeats],
            // Only the repeats ROAR+ runs on (`metrics.roar.repeats`); the others stay empty.
            Some(r) => (0..exp.repeats)
                .map(|k| {
                    if !r.runs_on(k, exp.repeats) {
                        return Ok(vec![]);
                    }
                    list(&r.dataset(&exp.dataset), split_seed(exp.dataset.seed, k)).map(|l| {
                        // A training pair that is also a validation pair is left out (never for
                        // shapes: the validation pairs come from their own stream).
                        l.into_iter()
                            .map(|x| match x {
                                Ok(s) if val_ids.contains(&s.id) => {
                                    Err((s.id, "also a ROAR+ validation pair".to_string()))
                                }
                                x => x,
                            })
                            .collect()
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(RunContext {
            exp,
            dir,
            git,
            listed,
            roar_listed,
            roar_val,
            claims,
        })
    }
}
