//! The first user's password: made random when the config sets none,
//! stored in the guest as a SHA-512 crypt hash, and kept in plain text only
//! in a 0600 file of the VM's data folder, for `kvmx-create password`.

use kvmx_core::config::Password;

use crate::{Error, Result};

/// Length of a random password.
const RANDOM_LENGTH: usize = 20;

/// The password of a new guest.
#[derive(Debug, Clone)]
pub struct GuestPassword {
    /// The hash for `/etc/shadow` (`None`: locked).
    pub hash: Option<String>,
    /// The plain text of a random password, which the build keeps.
    pub random: Option<String>,
}

impl GuestPassword {
    /// The password the config asks for.
    pub fn from_config(setting: &Password) -> Result<Self> {
        let (plain, random) = match setting {
            Password::Locked => {
                return Ok(GuestPassword {
                    hash: None,
                    random: None,
                });
            }
            Password::Plain(plain) => (plain.clone(), false),
            Password::Random => (random_text(RANDOM_LENGTH), true),
        };
        Ok(GuestPassword {
            hash: Some(hash(&plain)?),
            random: random.then_some(plain),
        })
    }
}

/// A SHA-512 crypt hash (`$6$...`) of `plain`.
pub fn hash(plain: &str) -> Result<String> {
    let params = sha_crypt::Sha512Params::default();
    sha_crypt::sha512_simple(plain, &params).map_err(|e| Error::PasswordHash(format!("{e:?}")))
}

/// `length` random letters and digits, without the ones easily mistaken
/// for each other (l, I, O, 0, 1), each equally likely.
pub fn random_text(length: usize) -> String {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Bytes at or above the last whole multiple of the alphabet's length
    // are thrown away: `byte % len` on them would favour the first letters.
    let limit = 256 - 256 % ALPHABET.len();
    let mut text = String::with_capacity(length);
    let mut bytes = [0u8; 64];
    while text.len() < length {
        rand_core::OsRng.fill_bytes(&mut bytes);
        let wanted = length - text.len();
        text.extend(
            bytes
                .iter()
                .map(|&byte| usize::from(byte))
                .filter(|&byte| byte < limit)
                .take(wanted)
                .map(|byte| ALPHABET[byte % ALPHABET.len()] as char),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_hashed_and_kept() {
        let password = GuestPassword::from_config(&Password::Random).unwrap();
        let plain = password.random.unwrap();
        assert_eq!(plain.len(), RANDOM_LENGTH);
        let hash = password.hash.unwrap();
        assert!(hash.starts_with("$6$"));
        assert!(sha_crypt::sha512_check(&plain, &hash).is_ok());
    }

    #[test]
    fn random_text_has_the_length_asked_for_from_the_alphabet() {
        for length in [0, 1, 32, 200] {
            let text = random_text(length);
            assert_eq!(text.len(), length);
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_alphanumeric() && !"lIO01".contains(c)),
                "{text}"
            );
        }
    }

    #[test]
    fn plain_is_not_kept_and_locked_has_no_hash() {
        let plain = GuestPassword::from_config(&Password::Plain("secret".into())).unwrap();
        assert!(plain.random.is_none());
        assert!(sha_crypt::sha512_check("secret", &plain.hash.unwrap()).is_ok());
        let locked = GuestPassword::from_config(&Password::Locked).unwrap();
        assert!(locked.hash.is_none() && locked.random.is_none());
    }
}
