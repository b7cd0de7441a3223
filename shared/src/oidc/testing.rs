//! Fixed key pairs of every provider algorithm, to sign provider tokens in tests and serve
//! them as a JWKS (test builds only: the `test-support` feature). Generated once for the
//! tests; never use them for anything else.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::public_jwk;

/// The public key of [`TestKey::RsaA`] as PEM (SubjectPublicKeyInfo), the form an attacker
/// finds it in: what an HS256 token "signed with the public key" uses as its secret.
pub const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("keys/rs256-a.public.pem");

/// A test key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    /// RSA 2048, RS256.
    RsaA,
    /// EC P-256, ES256.
    EcA,
    /// Another EC P-256, ES256 (a rotation's new key).
    EcB,
    /// Ed25519, EdDSA.
    EdA,
}

impl TestKey {
    /// The one algorithm the key signs with.
    #[must_use]
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::RsaA => Algorithm::RS256,
            Self::EcA | Self::EcB => Algorithm::ES256,
            Self::EdA => Algorithm::EdDSA,
        }
    }

    /// The private key.
    #[must_use]
    pub fn encoding_key(self) -> EncodingKey {
        match self {
            Self::RsaA => EncodingKey::from_rsa_der(include_bytes!("keys/rs256-a.pkcs1.der")),
            Self::EcA => EncodingKey::from_ec_der(include_bytes!("keys/es256-a.pk8.der")),
            Self::EcB => EncodingKey::from_ec_der(include_bytes!("keys/es256-b.pk8.der")),
            Self::EdA => EncodingKey::from_ed_der(include_bytes!("keys/ed25519-a.pk8.der")),
        }
    }

    /// The public key as a JWK named `kid`.
    ///
    /// # Panics
    /// Never: the fixed keys are valid.
    #[must_use]
    pub fn jwk(self, kid: &str) -> serde_json::Value {
        public_jwk(&self.encoding_key(), self.algorithm(), kid)
            .unwrap_or_else(|_| unreachable!("the fixed test keys are valid"))
    }

    /// `claims` signed with this key, its algorithm and `kid` in the header.
    ///
    /// # Panics
    /// Never: the fixed keys are valid and the claims serialisable.
    #[must_use]
    pub fn sign(self, kid: &str, claims: &impl Serialize) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key())
            .unwrap_or_else(|_| unreachable!("the fixed test keys sign their own algorithm"))
    }
}

/// A JWKS of `keys`, each under its `kid`.
#[must_use]
pub fn jwks(keys: &[(TestKey, &str)]) -> serde_json::Value {
    serde_json::json!({
        "keys": keys.iter().map(|(key, kid)| key.jwk(kid)).collect::<Vec<_>>()
    })
}
