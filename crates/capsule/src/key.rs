//! Secret keys for issuers and relaying nodes, the raw 64-byte signatures they make, and the
//! key file format (`<kid>.key`).

use std::fmt;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};

use crate::trust::{Algorithm, PublicKey};

/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// Why a key file is unusable. Never carries key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("the key file is larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge,
    #[error("the key file is not JSON `{{\"alg\", \"kid\", \"secret_b64\"}}`")]
    Malformed,
    #[error("the key file does not hold a valid {} secret key", .0.as_str())]
    BadKey(Algorithm),
}

/// A secret key file: `{"alg": "ed25519"|"secp256k1", "kid": "...", "secret_b64": "..."}`, where
/// `secret_b64` is the unpadded base64url of the 32 secret bytes. `portcullis capsule keygen`
/// writes it; `capsule sign` and a gateway's `[cluster]` node key read it.
#[derive(Clone, Debug)]
pub struct KeyFile {
    pub kid: String,
    pub key: SigningKey,
}

/// The JSON shape of [`KeyFile`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    alg: Algorithm,
    kid: String,
    secret_b64: String,
}

impl KeyFile {
    /// Parses a key file's bytes (unknown fields refused).
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        if bytes.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyFileError::TooLarge);
        }
        let file: KeyFileJson =
            serde_json::from_slice(bytes).map_err(|_| KeyFileError::Malformed)?;
        let key = crate::b64::decode(file.secret_b64.as_bytes())
            .and_then(|secret| SigningKey::from_secret_bytes(file.alg, &secret))
            .ok_or(KeyFileError::BadKey(file.alg))?;
        Ok(Self { kid: file.kid, key })
    }

    /// The file's text (pretty JSON, no trailing newline). It holds the secret: write it 0600.
    pub fn to_json(&self) -> String {
        let file = KeyFileJson {
            alg: self.key.algorithm(),
            kid: self.kid.clone(),
            secret_b64: crate::b64::encode(&self.key.secret_bytes()),
        };
        // Three strings: serialization cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }
}

/// A secret signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A key from its 32 secret bytes (the Ed25519 seed, or the secp256k1 scalar big-endian);
    /// `None` when the bytes are not a valid secret for `alg`.
    pub fn from_secret_bytes(alg: Algorithm, bytes: &[u8]) -> Option<Self> {
        match alg {
            Algorithm::Ed25519 => {
                let seed: &[u8; 32] = bytes.try_into().ok()?;
                Some(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    seed,
                )))
            }
            Algorithm::Secp256k1 => {
                if bytes.len() != 32 {
                    return None;
                }
                k256::ecdsa::SigningKey::from_slice(bytes)
                    .ok()
                    .map(SigningKey::Secp256k1)
            }
        }
    }

    /// The 32 secret bytes, for writing a key file. Never log them.
    pub fn secret_bytes(&self) -> [u8; 32] {
        match self {
            SigningKey::Ed25519(key) => key.to_bytes(),
            SigningKey::Secp256k1(key) => key.to_bytes().into(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
            SigningKey::Secp256k1(_) => Algorithm::Secp256k1,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            SigningKey::Secp256k1(key) => PublicKey::Secp256k1(*key.verifying_key()),
        }
    }

    /// A raw 64-byte signature: Ed25519, or secp256k1 ECDSA over SHA-256 as `r || s` with low S.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            SigningKey::Ed25519(key) => key.sign(message).to_bytes(),
            SigningKey::Secp256k1(key) => {
                let signature: k256::ecdsa::Signature = key.sign(message);
                // INVARIANT (low-s): RFC 6979 signing in k256 already yields low S; normalizing
                // again costs nothing and keeps the verifier's rule true for every token we make.
                let signature = signature.normalize_s().unwrap_or(signature);
                signature.to_bytes().into()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <secret>)", self.algorithm().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, tests 1, 2, 3 and SHA(abc): secret, public key, message, signature.
    const VECTORS: &[(&str, &str, &str, &str)] = &[
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
        (
            "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
            "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        ),
    ];

    #[track_caller]
    fn check(secret: &str, public: &str, message: &str, signature: &str) {
        let secret = hex::decode(secret).unwrap();
        let message = hex::decode(message).unwrap();
        let signature: [u8; 64] = hex::decode(signature).unwrap().try_into().unwrap();
        let key = SigningKey::from_secret_bytes(Algorithm::Ed25519, &secret).unwrap();
        assert_eq!(hex::encode(key.public_key().to_bytes()), public);
        assert_eq!(key.sign(&message), signature, "deterministic signature");
        let public =
            PublicKey::from_bytes(Algorithm::Ed25519, &hex::decode(public).unwrap()).unwrap();
        assert_eq!(public.verify(&message, &signature), Ok(()));
        let mut flipped = signature;
        flipped[63] ^= 0x10;
        assert!(public.verify(&message, &flipped).is_err());
    }

    #[test]
    fn rfc8032_vectors() {
        for (secret, public, message, signature) in VECTORS {
            check(secret, public, message, signature);
        }
    }

    #[test]
    fn key_files_round_trip_and_refuse_bad_input() {
        for alg in [Algorithm::Ed25519, Algorithm::Secp256k1] {
            let key = SigningKey::from_secret_bytes(alg, &[7; 32]).unwrap();
            let file = KeyFile {
                kid: "node-a-1".into(),
                key: key.clone(),
            };
            let parsed = KeyFile::parse(file.to_json().as_bytes()).unwrap();
            assert_eq!(parsed.kid, "node-a-1");
            assert_eq!(parsed.key.secret_bytes(), key.secret_bytes());
            assert_eq!(parsed.key.algorithm(), alg);
        }
        let check = |text: &str, expected: KeyFileError| {
            assert_eq!(
                KeyFile::parse(text.as_bytes()).unwrap_err(),
                expected,
                "{text}"
            );
        };
        check("{}", KeyFileError::Malformed);
        check(
            r#"{"alg":"ed25519","kid":"k","secret_b64":"AA","extra":1}"#,
            KeyFileError::Malformed,
        );
        check(
            r#"{"alg":"ed25519","kid":"k","secret_b64":"AA"}"#,
            KeyFileError::BadKey(Algorithm::Ed25519),
        );
        check(
            &format!(
                r#"{{"alg":"secp256k1","kid":"k","secret_b64":"{}"}}"#,
                crate::b64::encode(&[0; 32])
            ),
            KeyFileError::BadKey(Algorithm::Secp256k1),
        );
        check(&" ".repeat(MAX_KEY_FILE_BYTES + 1), KeyFileError::TooLarge);
        let key = SigningKey::from_secret_bytes(Algorithm::Ed25519, &[7; 32]).unwrap();
        let debug = format!(
            "{:?}",
            KeyFile {
                kid: "k".into(),
                key
            }
        );
        assert!(!debug.contains(&crate::b64::encode(&[7; 32])), "{debug}");
    }

    #[test]
    fn secp256k1_signs_low_s_and_verifies() {
        let key = SigningKey::from_secret_bytes(Algorithm::Secp256k1, &[7; 32]).unwrap();
        let public = key.public_key();
        assert_eq!(public.to_bytes().len(), 33);
        for message in [&b""[..], b"portcullis", &[0u8; 1500]] {
            let signature = key.sign(message);
            assert_eq!(public.verify(message, &signature), Ok(()));
        }
        assert!(SigningKey::from_secret_bytes(Algorithm::Secp256k1, &[0; 32]).is_none());
        assert!(SigningKey::from_secret_bytes(Algorithm::Secp256k1, &[0xff; 32]).is_none());
        assert!(SigningKey::from_secret_bytes(Algorithm::Ed25519, &[1; 31]).is_none());
        assert_eq!(format!("{key:?}"), "SigningKey(secp256k1, <secret>)");
    }
}
