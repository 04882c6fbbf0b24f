//! Single-use tokens for pending streaming requests.
//!
//! GetExec, GetAttach and GetPortForward put the request here and hand out a URL naming a
//! random token; the first HTTP request with that token takes it out. Like kubelet's
//! request cache, entries expire after a TTL (1 minute) and at most `max_in_flight` (1000)
//! wait at once; a full cache refuses new requests rather than evicting live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use super::error::StreamingError;
use super::request::CachedRequest;

/// Random bytes per token: 64 bits, as kubelet uses, URL-safe base64 without padding.
const TOKEN_BYTES: usize = 8;

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, (CachedRequest, Instant)>,
    /// Tokens in insertion order, so expired ones are dropped from the front.
    order: VecDeque<String>,
}

/// The cache of pending requests.
#[derive(Debug)]
pub struct RequestCache {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_in_flight: usize,
}

impl RequestCache {
    pub fn new(ttl: Duration, max_in_flight: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            max_in_flight,
        }
    }

    /// Stores `req` and returns its fresh token.
    pub fn insert(&self, req: CachedRequest) -> Result<String, StreamingError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::gc(&mut inner, now);
        if inner.entries.len() >= self.max_in_flight {
            return Err(StreamingError::TooManyInFlight(self.max_in_flight));
        }
        let token = loop {
            let t = random_token()?;
            if !inner.entries.contains_key(&t) {
                break t;
            }
        };
        inner.entries.insert(token.clone(), (req, now + self.ttl));
        inner.order.push_back(token.clone());
        Ok(token)
    }

    /// Takes the request for `token` out, if it is there and not expired.
    pub fn consume(&self, token: &str) -> Option<CachedRequest> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (req, expires) = inner.entries.remove(token)?;
        inner.order.retain(|t| t != token);
        (now < expires).then_some(req)
    }

    /// Requests waiting to be used.
    pub fn len(&self) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::gc(&mut inner, Instant::now());
        inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn gc(inner: &mut Inner, now: Instant) {
        while let Some(front) = inner.order.front() {
            match inner.entries.get(front) {
                Some((_, expires)) if *expires > now => break,
                _ => {
                    if let Some(t) = inner.order.pop_front() {
                        inner.entries.remove(&t);
                    }
                }
            }
        }
    }
}

fn random_token() -> Result<String, StreamingError> {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b).map_err(|e| StreamingError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::streaming::request::PortForwardRequest;

    fn pf(id: &str) -> CachedRequest {
        CachedRequest::PortForward(PortForwardRequest {
            pod_sandbox_id: id.into(),
            port: vec![],
        })
    }

    #[test]
    fn token_is_single_use() {
        let c = RequestCache::new(Duration::from_secs(60), 10);
        let t = c.insert(pf("a")).unwrap();
        assert_eq!(t.len(), 11);
        assert_eq!(c.consume(&t), Some(pf("a")));
        assert_eq!(c.consume(&t), None);
        assert_eq!(c.consume("nope"), None);
    }

    #[test]
    fn expired_tokens_are_gone() {
        let c = RequestCache::new(Duration::from_millis(20), 10);
        let t = c.insert(pf("a")).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.consume(&t), None);
        assert!(c.is_empty());
    }

    #[test]
    fn full_cache_refuses_until_entries_expire() {
        // Long enough that a slow machine does not expire entries between the inserts.
        let c = RequestCache::new(Duration::from_millis(1000), 3);
        let tokens: Vec<_> = (0..3)
            .map(|i| c.insert(pf(&i.to_string())).unwrap())
            .collect();
        assert!(matches!(
            c.insert(pf("x")),
            Err(StreamingError::TooManyInFlight(3))
        ));
        // Using one frees a place.
        assert!(c.consume(&tokens[1]).is_some());
        c.insert(pf("y")).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(c.len(), 0);
        c.insert(pf("z")).unwrap();
    }

    #[test]
    fn tokens_differ() {
        let c = RequestCache::new(Duration::from_secs(60), 1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(c.insert(pf("a")).unwrap()));
        }
    }
}
