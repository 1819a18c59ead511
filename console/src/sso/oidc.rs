//! OpenID Connect sign-in: the authorization code flow with PKCE (RFC 7636)
//! and a nonce, the provider found by discovery. Calls to the provider are
//! blocking (ureq): callers run them on the blocking pool.

use super::{role_for, Identity, OidcConfig, Refusal};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every claim of the ID token beyond the standard ones, for the
/// configured groups and user name claims.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Extra(pub serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for Extra {}

type Fields = IdTokenFields<
    Extra,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type Client<HasAuth, HasToken, HasUserInfo> = openidconnect::Client<
    Extra,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    HasAuth,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    HasToken,
    HasUserInfo,
>;
type Discovered = Client<openidconnect::EndpointSet, openidconnect::EndpointMaybeSet, openidconnect::EndpointMaybeSet>;

/// A sign-in begun: what the callback must prove it belongs to.
struct Pending {
    verifier: String,
    nonce: String,
    at: Instant,
}

/// Sign-ins begun and not finished within this are refused (the provider's
/// own code lives shorter still, a minute or so for Keycloak).
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Begun sign-ins kept at once; past it the oldest goes.
const MAX_PENDING: usize = 10_000;
/// The provider's metadata and keys are read again after this, and at once
/// when a token names a key we do not have (the provider rotated them).
const METADATA_TTL: Duration = Duration::from_secs(900);

pub struct Oidc {
    pub name: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    groups_claim: String,
    username_claim: String,
    role_map: super::RoleMap,
    default_role: Option<crate::users::Role>,
    http: ureq::Agent,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Oidc {
    /// Checks `[console.oidc]`; problems go to `errors`.
    pub fn new(c: &OidcConfig, errors: &mut Vec<String>) -> Option<Oidc> {
        let before = errors.len();
        let issuer = IssuerUrl::new(c.issuer.clone())
            .map_err(|e| errors.push(format!("console.oidc.issuer: '{}': {e}", c.issuer)))
            .ok();
        let redirect = RedirectUrl::new(c.redirect_url.clone())
            .map_err(|e| errors.push(format!("console.oidc.redirect_url: '{}': {e}", c.redirect_url)))
            .ok();
        if redirect.as_ref().is_some_and(|r| !r.url().path().ends_with("/login/oidc/callback")) {
            errors.push(format!("console.oidc.redirect_url: '{}' must end in /login/oidc/callback", c.redirect_url));
        }
        if c.client_id.trim().is_empty() {
            errors.push("console.oidc.client_id: empty".into());
        }
        if c.name.trim().is_empty() || c.name.len() > 64 {
            errors.push("console.oidc.name: 1 to 64 characters".into());
        }
        if c.groups_claim.trim().is_empty() {
            errors.push("console.oidc.groups_claim: empty".into());
        }
        if c.role_map.is_empty() && c.default_role.is_none() {
            errors.push("console.oidc: role_map is empty and there is no default_role: nobody could sign in".into());
        }
        let secret = match (&c.client_secret, &c.client_secret_file) {
            (Some(_), Some(_)) => {
                errors.push("console.oidc: client_secret and client_secret_file are both set; keep one".into());
                None
            }
            (Some(s), None) => Some(ClientSecret::new(s.clone())),
            (None, Some(p)) => super::read_secret(p, "console.oidc.client_secret_file", errors).map(ClientSecret::new),
            (None, None) => None,
        };
        let mut http = ureq::AgentBuilder::new()
            // The token endpoint is POSTed to with the client's secret: no
            // redirect may take it elsewhere.
            .redirects(0)
            .timeout(Duration::from_secs(c.timeout_secs.clamp(1, 120)));
        if let Some(ca) = &c.ca_file {
            if let Some(tls) = super::tls_with_ca(ca, "console.oidc.ca_file", errors) {
                http = http.tls_config(tls);
            }
        }
        if errors.len() > before {
            return None;
        }
        Some(Oidc {
            name: c.name.clone(),
            issuer: issuer?,
            client_id: ClientId::new(c.client_id.clone()),
            secret,
            redirect: redirect?,
            scopes: c.scopes.iter().filter(|s| s.as_str() != "openid").cloned().collect(),
            groups_claim: c.groups_claim.clone(),
            username_claim: c.username_claim.clone(),
            role_map: c.role_map.clone(),
            default_role: c.default_role,
            http: http.build(),
            metadata: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's metadata and keys, read again when old or `fresh`.
    fn metadata(&self, fresh: bool) -> Result<CoreProviderMetadata, Refusal> {
        {
            let m = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, meta)) = m.as_ref() {
                if !fresh && at.elapsed() < METADATA_TTL {
                    return Ok(meta.clone());
                }
            }
        }
        let meta = CoreProviderMetadata::discover(&self.issuer, &self.http).map_err(|e| {
            Refusal::new("sso.unreachable", format!("discovery at {}: {}", self.issuer.as_str(), chain(&e)))
        })?;
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    fn client(&self, meta: CoreProviderMetadata) -> Discovered {
        Client::from_provider_metadata(meta, self.client_id.clone(), self.secret.clone())
            .set_redirect_uri(self.redirect.clone())
    }

    /// Begins a sign-in: the provider's URL to send the browser to, and the
    /// state to bind to that browser (a cookie the callback checks).
    pub fn begin(&self) -> Result<(String, String), Refusal> {
        let client = self.client(self.metadata(false)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.url();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.at.elapsed() < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            if let Some(k) = pending.iter().min_by_key(|(_, p)| p.at).map(|(k, _)| k.clone()) {
                pending.remove(&k);
            }
        }
        pending.insert(
            state.secret().clone(),
            Pending { verifier: verifier.secret().clone(), nonce: nonce.secret().clone(), at: Instant::now() },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes a sign-in from the provider's callback. `state` came back
    /// in the URL, `bound` from the cookie set when it began: both must be
    /// the same, begun here, and not too old. Each begun sign-in can be
    /// finished once.
    pub fn finish(&self, state: &str, bound: &str, code: &str) -> Result<Identity, Refusal> {
        if state.is_empty() || !crate::session::same(state, bound) {
            return Err(Refusal::new("sso.bad_state", "state does not match this browser's"));
        }
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(state);
        let Some(p) = pending else {
            return Err(Refusal::new("sso.bad_state", "state unknown or already used"));
        };
        if p.at.elapsed() >= PENDING_TTL {
            return Err(Refusal::new("sso.expired", "sign-in began too long ago"));
        }
        if code.is_empty() {
            return Err(Refusal::new("sso.exchange", "no code in the callback"));
        }
        let client = self.client(self.metadata(false)?);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| Refusal::new("sso.unreachable", format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(p.verifier))
            .request(&self.http)
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => Refusal::new("sso.exchange", format!("token endpoint: {r}")),
                RequestTokenError::Request(e) if is_status(&e) => {
                    Refusal::new("sso.exchange", format!("token endpoint: {}", chain(&e)))
                }
                e => Refusal::new("sso.unreachable", format!("token endpoint: {}", chain(&e))),
            })?;
        let Some(id_token) = tokens.id_token() else {
            return Err(Refusal::new("sso.bad_token", "the token response holds no id token"));
        };
        let nonce = Nonce::new(p.nonce);
        let verified = id_token.claims(&client.id_token_verifier(), &nonce).cloned();
        let claims = match verified {
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps keys rotated since we read them: once more with
                // the provider's current keys, then refuse.
                let client = self.client(self.metadata(true)?);
                let again = id_token.claims(&client.id_token_verifier(), &nonce).cloned();
                again
            }
            other => other,
        }
        .map_err(|e| Refusal::new("sso.bad_token", format!("id token: {}", chain(&e))))?;
        let subject = claims.subject().as_str().to_string();
        let extra = &claims.additional_claims().0;
        let name = match self.username_claim.as_str() {
            "preferred_username" => claims.preferred_username().map(|u| u.as_str().to_string()),
            "email" => claims.email().map(|e| e.as_str().to_string()),
            other => extra.get(other).and_then(|v| v.as_str()).map(str::to_string),
        }
        .or_else(|| claims.email().map(|e| e.as_str().to_string()))
        .filter(|n| !n.trim().is_empty() && n.len() <= 128 && !n.chars().any(char::is_control))
        .unwrap_or_else(|| subject.clone());
        let groups: Vec<String> = match extra.get(&self.groups_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let user = format!("oidc:{name}");
        let Some(role) = role_for(&groups, &self.role_map, self.default_role) else {
            return Err(Refusal::new(
                "sso.no_role",
                format!("{user} (subject {subject}) is in no mapped group: {groups:?}"),
            ));
        };
        Ok(Identity { user, subject, groups, role })
    }
}

fn is_status(e: &openidconnect::HttpClientError<ureq::Error>) -> bool {
    matches!(e, openidconnect::HttpClientError::Reqwest(e) if matches!(**e, ureq::Error::Status(..)))
}

/// An error with its causes, for the log and the audit trail.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
