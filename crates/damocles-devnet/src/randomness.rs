//! Deterministic chain randomness: the same (network seed, domain, epoch,
//! entropy) always gives the same 32 bytes, on every machine, after a restart.
//! The layout follows Filecoin's `DrawRandomness` (domain tag, base
//! randomness, epoch, entropy hashed with blake2b-256); the base randomness of
//! an epoch is a hash of the network seed and the epoch instead of a beacon.

use damocles_chain::{Domain, Epoch};

pub fn draw(network_seed: &[u8], domain: Domain, epoch: Epoch, entropy: &[u8]) -> [u8; 32] {
    let base = blake2b_simd::Params::new()
        .hash_length(32)
        .to_state()
        .update(network_seed)
        .update(&epoch.to_be_bytes())
        .finalize();
    let out = blake2b_simd::Params::new()
        .hash_length(32)
        .to_state()
        .update(&(domain as i64).to_be_bytes())
        .update(base.as_bytes())
        .update(&epoch.to_be_bytes())
        .update(entropy)
        .finalize();
    let mut r = [0u8; 32];
    r.copy_from_slice(out.as_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_output_any_change_differs() {
        let a = draw(b"net", Domain::SealRandomness, 10, b"m1000");
        assert_eq!(a, draw(b"net", Domain::SealRandomness, 10, b"m1000"));
        assert_ne!(
            a,
            draw(b"net", Domain::InteractiveSealChallengeSeed, 10, b"m1000")
        );
        assert_ne!(a, draw(b"net", Domain::SealRandomness, 11, b"m1000"));
        assert_ne!(a, draw(b"net", Domain::SealRandomness, 10, b"m1001"));
        assert_ne!(a, draw(b"other", Domain::SealRandomness, 10, b"m1000"));
    }
}
