//! What a verified token grants, and the checks every issuer's token shares (HS256 in
//! [`crate::auth`], a provider's in [`crate::oidc`]): the times with their leeway, the claims
//! mapped to a [`Grant`] by one function, and the refusals. Uses neither issuer's module.

use jsonwebtoken::errors::ErrorKind;

use crate::domain::{Artist, ArtistKey, ArtistList, EpochSeconds, Scope, UserId};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const TOKEN_LEEWAY_SECONDS: i64 = 30;
/// Most artists an `artists` claim may hold.
pub const MAX_SCOPED_ARTISTS: usize = 500;
/// Why a token was refused. `$connect`'s answer to it is decided with the others, in
/// `routes::connect::Answer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `token` query parameter.
    #[error("no token")]
    Missing,
    /// Not a JWT, wrong algorithm, missing claims or claims of the wrong type; or a bad
    /// signature on a token that would be refused whatever key signed it (unreadable claims,
    /// expired).
    #[error("malformed or unverifiable token ({0})")]
    Invalid(&'static str),
    /// A well-formed, current HS256 token signed with none of the keys in use: forged, or
    /// signed with a key this verifier has not read yet (just after a rotation). The only
    /// refusal that newer keys could turn into a grant.
    #[error("malformed or unverifiable token (bad signature)")]
    BadSignature {
        /// The token's `iat`, as it claims (unverified): when it says it was signed.
        issued_at: Option<EpochSeconds>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// Issued for another audience.
    #[error("token is for another audience")]
    WrongAudience,
    /// A provider's token (asymmetric `alg`) whose `iss` is not the configured issuer.
    #[error("token is from another issuer")]
    WrongIssuer,
    /// A well-formed, current provider token whose `kid` is not among the provider's keys
    /// this verifier holds: forged, or signed with a key the provider published after the
    /// last fetch of its JWKS (a rotation). The only provider refusal a refetch could turn
    /// into a grant.
    #[error("malformed or unverifiable token (unknown key)")]
    UnknownKey,
    /// Authentic and current, but grants nothing usable (blank user, empty or invalid `artists`).
    #[error("token grants no access ({0})")]
    Forbidden(&'static str),
}

impl TokenError {
    /// A short fixed name for metrics (`ConnectRefusals` by `Reason`).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid(_) | Self::BadSignature { .. } => "invalid",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Forbidden(_) => "forbidden",
        }
    }
}

/// What a verified token says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The `sub` claim.
    pub user_id: UserId,
    /// The `artists` claim, as a scope.
    pub scope: Scope,
    /// When the token stops being accepted: `exp` plus the leeway. A connection made with it
    /// lives no longer.
    pub expires_at: EpochSeconds,
    /// The `subscribe` claim: artists to subscribe to during `$connect`, each within the scope.
    pub subscribe: Option<ArtistList>,
    /// The `publish` claim: the rooms it may publish to (keys, sorted); empty without one.
    pub publish: Vec<ArtistKey>,
    /// The `iat` claim, when the token has one: a revocation refuses the user's tokens issued
    /// at or before it.
    pub issued_at: Option<EpochSeconds>,
}

/// Refuses a token expired (`exp`) or not yet valid (`nbf`) at `now`, beyond the leeway.
pub(crate) fn check_times(exp: i64, nbf: Option<i64>, now: EpochSeconds) -> Result<(), TokenError> {
    if now > exp.saturating_add(TOKEN_LEEWAY_SECONDS) {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| now < nbf.saturating_sub(TOKEN_LEEWAY_SECONDS)) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The list claims of a verified token, under whatever names its issuer gives them.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    /// The scope (`artists`).
    pub(crate) artists: Option<Vec<String>>,
    /// Artists to subscribe to during `$connect` (`subscribe`).
    pub(crate) subscribe: Option<Vec<String>>,
    /// Rooms it may publish to (`publish`).
    pub(crate) publish: Option<Vec<String>>,
    /// When it says it was issued (`iat`), when it says so as a number.
    pub(crate) issued_at: Option<EpochSeconds>,
}

/// The grant of a verified, current token whose subject is `sub` and which expires at `exp`:
/// the same rules for every issuer (HS256 or an OpenID Connect provider).
pub(crate) fn grant(sub: &str, exp: i64, claims: Mapped) -> Result<Grant, TokenError> {
    let user_id = UserId::parse(sub).map_err(|_| TokenError::Forbidden("unusable sub"))?;
    let scope = match claims.artists {
        None => Scope::Any,
        Some(names) if names.is_empty() => {
            return Err(TokenError::Forbidden("artists claim is empty"));
        }
        Some(names) if names.len() > MAX_SCOPED_ARTISTS => {
            return Err(TokenError::Forbidden("artists claim is too long"));
        }
        Some(names) => {
            let mut keys = Vec::with_capacity(names.len());
            for name in &names {
                let artist = Artist::parse(name)
                    .map_err(|_| TokenError::Forbidden("artists claim holds an invalid name"))?;
                keys.push(artist.key().clone());
            }
            keys.sort();
            keys.dedup();
            Scope::Only(keys)
        }
    };
    let subscribe = match claims.subscribe {
        None => None,
        Some(names) => {
            let list = ArtistList::parse(&names)
                .map_err(|_| TokenError::Forbidden("subscribe claim is not a valid artist list"))?;
            if !list
                .as_slice()
                .iter()
                .all(|artist| scope.allows(artist.key()))
            {
                return Err(TokenError::Forbidden(
                    "subscribe claim names an artist outside the artists claim",
                ));
            }
            Some(list)
        }
    };
    let publish = match claims.publish {
        None => Vec::new(),
        Some(names) if names.len() > MAX_SCOPED_ARTISTS => {
            return Err(TokenError::Forbidden("publish claim is too long"));
        }
        Some(names) => {
            let mut keys = Vec::with_capacity(names.len());
            for name in &names {
                let artist = Artist::parse(name)
                    .map_err(|_| TokenError::Forbidden("publish claim holds an invalid name"))?;
                keys.push(artist.key().clone());
            }
            keys.sort();
            keys.dedup();
            keys
        }
    };
    Ok(Grant {
        user_id,
        scope,
        expires_at: exp.saturating_add(TOKEN_LEEWAY_SECONDS),
        subscribe,
        publish,
        issued_at: claims.issued_at,
    })
}

/// A NumericDate claim as whole epoch seconds (a fractional one rounded down); `None` when it is
/// not a number, or out of range.
pub(crate) fn numeric_date(value: &serde_json::Value) -> Option<EpochSeconds> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| seconds.is_finite() && seconds.abs() < 1e15)
            // Within ±1e15, the whole part fits an i64 exactly.
            .map(|seconds| {
                #[allow(clippy::cast_possible_truncation)]
                let whole = seconds.floor() as i64;
                whole
            })
    })
}

pub(crate) fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenError::Invalid("algorithm not allowed"),
        ErrorKind::MissingRequiredClaim(_) => TokenError::Invalid("missing required claim"),
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
            TokenError::Invalid("claims of the wrong shape")
        }
        _ => TokenError::Invalid("not a JWT"),
    }
}
