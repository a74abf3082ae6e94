//! Seeds and content hashes (DESIGN.md "Runner and results"). sample_seed = f(experiment seed,
//! sample id, repeat, method): hyper-parameters are NOT in it, so the cells of a grid share noise.
//! A leaf: every other module derives its seeds here, so no two derive one differently.
use serde_json::Value;

/// 64 bits of sha1 over the parts joined by a separator.
pub fn hash64(parts: &[&str]) -> u64 {
    let d = sha1_smol::Sha1::from(parts.join("\u{1f}")).digest().bytes();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A job id: 16 hex digits of `hash64`.
pub fn id_of(parts: &[&str]) -> String {
    format!("{:016x}", hash64(parts))
}

pub fn sample_seed(experiment_seed: u64, sample_id: &str, repeat: usize, method: &str) -> u64 {
    hash64(&[
        &experiment_seed.to_string(),
        sample_id,
        &repeat.to_string(),
        method,
    ])
}

/// The subset seed of a repeat (a new subset per repeat).
pub fn split_seed(dataset_seed: u64, repeat: usize) -> u64 {
    hash64(&["subset", &dataset_seed.to_string(), &repeat.to_string()])
}

/// The ROAR+ fine-tunings' seed of a repeat (shared by every method, so they differ only in maps).
pub fn roar_seed(experiment_seed: u64, repeat: usize) -> u64 {
    hash64(&["roar", &experiment_seed.to_string(), &repeat.to_string()])
}

/// The subset seed of ROAR+'s fixed validation pairs (the same for every repeat).
pub fn roar_val_seed() -> u64 {
    hash64(&["roar-val"])
}

/// The sanity cascade's randomisation seed of a repeat.
pub fn sanity_seed(experiment_seed: u64, repeat: usize) -> u64 {
    split_seed(
        experiment_seed ^ m2ib_clip::rng::stream::SANITY_RANDOMIZE,
        repeat,
    )
}

/// JSON with sorted keys (serde_json's map is sorted), so equal params hash equally.
pub fn canonical(v: &Value) -> String {
    serde_json::to_string(v).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values job ids and result rows were made with: a change here changes every id.
    #[test]
    fn seeds_are_stable() {
        assert_eq!(id_of(&["a", "b"]), format!("{:016x}", hash64(&["a", "b"])));
        assert_eq!(hash64(&["a\u{1f}b"]), hash64(&["a", "b"]));
        assert_eq!(split_seed(7, 1), hash64(&["subset", "7", "1"]));
        assert_eq!(sanity_seed(7, 1), split_seed(7 ^ 0x5A17, 1));
        assert_eq!(roar_seed(7, 1), hash64(&["roar", "7", "1"]));
    }
}
