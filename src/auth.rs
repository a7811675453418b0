//! JWT verification and issuing (HS256), the server secret, and the rule that
//! decides a user's role in a session. No sockets, no SQL.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::{Role, SessionInfo};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// JWT claims of PROTOCOL.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub sessions: HashMap<String, Role>,
}

/// What [`Auth::verify`] reads: the user claims, plus `aud`, which no user
/// token carries (a token with an audience, such as an invite, is refused).
#[derive(Debug, Deserialize)]
struct UserClaims {
    sub: String,
    name: String,
    #[serde(default)]
    sessions: HashMap<String, Role>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
}

/// The `aud` of invite tokens (PROTOCOL.md, "Invite links").
pub const INVITE_AUDIENCE: &str = "tandem-invite";

/// Claims of an invite token: `aud = "tandem-invite"`, the session, the
/// role it grants, expiry. No `sub`: an invite names no user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    pub aud: String,
    pub sid: String,
    pub role: Role,
    pub exp: i64,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Roles pinned by the token's `sessions` claim.
    pub sessions: HashMap<String, Role>,
    /// `Some(cap)` for token-less guests (`--anonymous`): at most `cap`, public sessions only.
    pub guest_cap: Option<Role>,
}

impl User {
    pub fn guest(id: String, name: String, cap: Role) -> Self {
        Self {
            id,
            name,
            sessions: HashMap::new(),
            guest_cap: Some(cap),
        }
    }

    /// The role this user holds in `session`, given their participant row's
    /// role (PROTOCOL.md, "Authorization"). `None` = no access.
    pub fn role_in(&self, session: &SessionInfo, row_role: Option<Role>) -> Option<Role> {
        if let Some(cap) = self.guest_cap {
            return guest_role(session, cap);
        }
        if let Some(role) = self.sessions.get(&session.id) {
            return Some(*role);
        }
        row_or_public_role(session, row_role)
    }
}

/// A token-less guest's role: the public role capped at `cap`, in public
/// sessions only.
pub fn guest_role(session: &SessionInfo, cap: Role) -> Option<Role> {
    session.public.then(|| session.public_role.min(cap))
}

/// The role of a user whose token does not pin one: the higher of their
/// participant row and, for a public session, its public role.
pub fn row_or_public_role(session: &SessionInfo, row_role: Option<Role>) -> Option<Role> {
    row_role.max(session.public.then_some(session.public_role))
}

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    invite_validation: Validation,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Audiences are checked by hand: a user token has none.
        validation.validate_aud = false;
        let mut invite_validation = Validation::new(Algorithm::HS256);
        invite_validation.leeway = 0;
        invite_validation.validate_nbf = true;
        invite_validation.set_required_spec_claims(&["exp", "aud"]);
        invite_validation.set_audience(&[INVITE_AUDIENCE]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            invite_validation,
        }
    }

    /// A token for `user_id` valid for `ttl_secs` (negative: already expired).
    pub fn issue(
        &self,
        user_id: &str,
        name: &str,
        sessions: HashMap<String, Role>,
        ttl_secs: i64,
    ) -> String {
        let claims = Claims {
            sub: user_id.to_owned(),
            name: name.to_owned(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            sessions,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies a user token. A token carrying an `aud` claim (an invite,
    /// or any token minted for another purpose) is not a user token.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let data = jsonwebtoken::decode::<UserClaims>(token, &self.decoding, &self.validation)?;
        let c = data.claims;
        if c.aud.is_some() {
            return Err(AuthError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAudience.into(),
            ));
        }
        Ok(User {
            id: c.sub,
            name: c.name,
            sessions: c.sessions,
            guest_cap: None,
        })
    }
}

impl Auth {
    /// An invite token for `session_id` granting `role`, valid for
    /// `ttl_secs`; returns the token and its expiry (seconds since the epoch).
    pub fn issue_invite(&self, session_id: &str, role: Role, ttl_secs: i64) -> (String, i64) {
        let claims = InviteClaims {
            aud: INVITE_AUDIENCE.to_owned(),
            sid: session_id.to_owned(),
            role,
            exp: chrono::Utc::now().timestamp() + ttl_secs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail");
        (token, claims.exp)
    }

    /// Verifies an invite token: our signature, not expired, `aud` =
    /// `tandem-invite`. A user token is not an invite.
    pub fn verify_invite(&self, token: &str) -> Result<InviteClaims, AuthError> {
        let data =
            jsonwebtoken::decode::<InviteClaims>(token, &self.decoding, &self.invite_validation)?;
        Ok(data.claims)
    }
}

/// The secret from the flag, else `<data_dir>/secret`, generated on first use.
pub fn load_or_create_secret(flag: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = flag {
        anyhow::ensure!(!s.is_empty(), "--secret must not be empty");
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "generated a new JWT secret");
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(public: bool, public_role: Role) -> SessionInfo {
        SessionInfo {
            id: "s".into(),
            title: String::new(),
            language: String::new(),
            owner_id: "o".into(),
            public,
            public_role,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let auth = Auth::new(b"k1");
        let t = auth.issue("u1", "Ann", HashMap::from([("s".into(), Role::Viewer)]), 60);
        let u = auth.verify(&t).unwrap();
        assert_eq!((u.id.as_str(), u.name.as_str()), ("u1", "Ann"));
        assert_eq!(u.sessions["s"], Role::Viewer);
        assert!(Auth::new(b"k2").verify(&t).is_err(), "wrong key");
        assert!(
            auth.verify(&auth.issue("u1", "Ann", HashMap::new(), -5))
                .is_err(),
            "expired"
        );
        assert!(auth.verify("garbage").is_err());
    }

    #[test]
    fn invites_and_user_tokens_do_not_mix() {
        let auth = Auth::new(b"k1");
        let (invite, exp) = auth.issue_invite("s1", Role::Editor, 60);
        let c = auth.verify_invite(&invite).unwrap();
        assert_eq!((c.sid.as_str(), c.role, c.exp), ("s1", Role::Editor, exp));
        assert_eq!(c.aud, INVITE_AUDIENCE);
        assert!(
            auth.verify(&invite).is_err(),
            "an invite is not a user token"
        );
        let user = auth.issue("u1", "Ann", HashMap::new(), 60);
        assert!(
            auth.verify_invite(&user).is_err(),
            "a user token is not an invite"
        );
        assert!(
            Auth::new(b"k2").verify_invite(&invite).is_err(),
            "wrong key"
        );
        assert!(
            auth.verify_invite(&auth.issue_invite("s1", Role::Viewer, -5).0)
                .is_err(),
            "expired"
        );
        // Any audience makes a token something other than a user token.
        let with_aud = serde_json::json!({
            "sub": "u1", "name": "Ann", "exp": chrono::Utc::now().timestamp() + 60, "aud": "other"
        });
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &with_aud, &auth.encoding)
            .unwrap();
        assert!(auth.verify(&t).is_err());
        // An invite-shaped token with another audience is no invite.
        let other = serde_json::json!({
            "aud": "else", "sid": "s1", "role": "editor", "exp": chrono::Utc::now().timestamp() + 60
        });
        let t =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &other, &auth.encoding).unwrap();
        assert!(auth.verify_invite(&t).is_err());
    }

    #[test]
    fn role_rules() {
        let auth = Auth::new(b"k");
        let u = auth
            .verify(&auth.issue("u", "U", HashMap::new(), 60))
            .unwrap();
        assert_eq!(u.role_in(&session(false, Role::Editor), None), None);
        assert_eq!(
            u.role_in(&session(true, Role::Editor), None),
            Some(Role::Editor)
        );
        assert_eq!(
            u.role_in(&session(true, Role::Viewer), Some(Role::Owner)),
            Some(Role::Owner)
        );
        let pinned = auth
            .verify(&auth.issue("u", "U", HashMap::from([("s".into(), Role::Viewer)]), 60))
            .unwrap();
        assert_eq!(
            pinned.role_in(&session(true, Role::Editor), Some(Role::Owner)),
            Some(Role::Viewer)
        );
        let g = User::guest("anon:x".into(), "Guest".into(), Role::Viewer);
        assert_eq!(
            g.role_in(&session(true, Role::Editor), None),
            Some(Role::Viewer)
        );
        assert_eq!(
            g.role_in(&session(false, Role::Editor), Some(Role::Owner)),
            None
        );
    }
}
