//! DHIS2 UIDs made on the device: 11 characters, a letter then letters or digits, as DHIS2's
//! `CodeGenerator` makes them.

use crate::{error::Result, random::RandomSource};

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A fresh UID. Rejection sampling keeps every character uniformly distributed.
pub fn generate_uid(rng: &impl RandomSource) -> Result<String> {
    let mut out = String::with_capacity(11);
    let mut buf = [0u8; 32];
    while out.len() < 11 {
        rng.fill(&mut buf)?;
        for &b in &buf {
            let alphabet = if out.is_empty() { LETTERS } else { ALPHANUMERIC };
            let limit = 256 - (256 % alphabet.len());
            if (b as usize) < limit {
                out.push(alphabet[b as usize % alphabet.len()] as char);
                if out.len() == 11 {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{random::DeterministicRandom, records::is_uid};

    #[test]
    fn uids_have_the_dhis2_form_and_differ() {
        let rng = DeterministicRandom::new(3);
        let uids: Vec<String> = (0..1000).map(|_| generate_uid(&rng).unwrap()).collect();
        assert!(uids.iter().all(|u| is_uid(u)), "{uids:?}");
        let mut unique = uids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 1000);
    }
}
