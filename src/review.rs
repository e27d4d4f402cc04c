//! Who may read `/metrics`: the bearer token of a request is authenticated
//! with a TokenReview and authorised with a SubjectAccessReview for `get`
//! on the non-resource URL `/metrics`, as controller-runtime's secure metrics
//! serving does. Grant a scraper the chart's `…-metrics-reader` ClusterRole.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};
use tracing::warn;

/// The path and verb a scraper must be allowed.
const PATH: &str = "/metrics";
const VERB: &str = "get";

/// How long an allowed token is trusted without asking again: scrapes come
/// every few seconds, and each review is two API calls.
const TRUSTED_FOR: Duration = Duration::from_secs(60);

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token, or the API server did not authenticate it (401).
    Unauthenticated,
    /// Authenticated, but not allowed `get` on `/metrics` (403).
    Forbidden,
    /// The reviews themselves failed (503): try again.
    Unavailable,
}

/// Checks bearer tokens against the API server.
pub struct Reviewer {
    client: Client,
    /// SHA-256 of recently allowed tokens (never the tokens themselves).
    allowed: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Reviewer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            allowed: Mutex::default(),
        }
    }

    /// Checks the value of an `Authorization` header.
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthenticated)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.recently_allowed(&key) {
            return Ok(());
        }
        self.review(token).await?;
        self.lock().insert(key, Instant::now());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.allowed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recently_allowed(&self, key: &[u8; 32]) -> bool {
        let mut allowed = self.lock();
        allowed.retain(|_, at| at.elapsed() < TRUSTED_FOR);
        allowed.contains_key(key)
    }

    async fn review(&self, token: &str) -> Result<(), Refusal> {
        let tokens: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let status = tokens
            .create(&PostParams::default(), &review)
            .await
            .map_err(unavailable("TokenReview"))?
            .status
            .unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => user,
            _ => return Err(Refusal::Unauthenticated),
        };
        let access: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.to_owned()),
                    verb: Some(VERB.to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = access
            .create(&PostParams::default(), &review)
            .await
            .map_err(unavailable("SubjectAccessReview"))?
            .status
            .is_some_and(|s| s.allowed);
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden)
        }
    }
}

fn unavailable(what: &'static str) -> impl Fn(kube::Error) -> Refusal {
    move |e| {
        warn!(error = %e, "{what} for a /metrics request failed");
        Refusal::Unavailable
    }
}
