//! Building and sending requests: validation before any traffic, the circuit, retries with
//! backoff within the call's deadline, one attempt's concurrency slot, rate-limit token and
//! timeout, the classification of answers, and what is observed of each call.

use super::*;
use crate::partner::error::error_chain;

impl PartnerClient {
    pub(super) fn invalid(&self, call: CallKind, message: impl Into<String>) -> PartnerError {
        PartnerError::local(PartnerErrorKind::Invalid, call, &self.inner.site, message)
    }

    pub(super) fn blank_body(&self, call: CallKind) -> PartnerError {
        self.invalid(
            call,
            "the partner answered 2xx without the body this call needs",
        )
    }

    pub(super) fn check_email(&self, call: CallKind, email: &str) -> Result<(), PartnerError> {
        wire::validate_email(email).map_err(|m| self.invalid(call, m))
    }

    pub(super) fn email_header(
        &self,
        call: CallKind,
        email: &str,
    ) -> Result<HeaderValue, PartnerError> {
        wire::email_header_value(email).map_err(|m| self.invalid(call, m))
    }

    pub(super) fn prepare(
        &self,
        call: CallKind,
        method: Method,
        url: Result<Url, String>,
        body: Option<Bytes>,
    ) -> Result<Prepared, PartnerError> {
        let url = url.map_err(|m| self.invalid(call, m))?;
        Ok(Prepared {
            call,
            method,
            url,
            email: None,
            body,
        })
    }

    pub(super) fn prepare_write<B: Serialize>(
        &self,
        call: CallKind,
        method: Method,
        url: Result<Url, String>,
        test_mode: bool,
        body: Option<&B>,
    ) -> Result<Prepared, PartnerError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(|e| self.invalid(call, format!("cannot encode the request body: {e}")))?;
        let url = url.map(|u| wire::with_test_mode(u, test_mode));
        self.prepare(call, method, url, body)
    }

    // -----------------------------------------------------------------------------------------
    // Sending

    /// Runs one call: circuit, retries, limits, classification. `parse` reads a 2xx body
    /// (`Ok(None)` for a blank one); a body cut short is transient and retried.
    pub(super) fn execute<'a, T: Send + 'a>(
        &'a self,
        req: Prepared,
        parse: impl Fn(&[u8]) -> Result<Parsed<T>, ParseError> + Send + Sync + 'a,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Parsed<T>, PartnerError>> + Send + 'a>,
    > {
        // Boxed as `dyn Future + Send`: the retry combinator's closures otherwise leave rustc
        // unable to prove the caller's future Send when it runs in a spawned task.
        let parse: Box<ParseFn<'a, T>> = Box::new(parse);
        Box::pin(async move { self.execute_inner(req, &*parse).await })
    }

    async fn execute_inner<T: Send>(
        &self,
        req: Prepared,
        parse: &ParseFn<'_, T>,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let call = req.call;
        let span = tracing::info_span!(
            "partner_call",
            site = %inner.site,
            call = %call,
            status = Empty,
            attempt = Empty,
            latency_ms = Empty,
        );
        async {
            // A call that may not wait (an opportunistic read) leaves a partner that asked for
            // a pause alone: its capacity goes to the calls that must be made.
            if let Some(e) = self.paused_for_optional(call) {
                return Err(e);
            }
            let ticket = inner.circuit.ticket(Instant::now());
            let admission = ticket.admission();
            if let Admission::Reject { retry_after } = admission {
                tracing::warn!(
                    retry_after_ms = retry_after.as_millis() as u64,
                    "circuit open, call rejected"
                );
                self.observe(call, 0, None, CallOutcome::Rejected, Duration::ZERO);
                let mut e = PartnerError::local(
                    PartnerErrorKind::Unavailable,
                    call,
                    &inner.site,
                    "the site's circuit is open after repeated transient failures",
                );
                e.retry_after = Some(retry_after);
                return Err(e);
            }
            // The half-open probe is a single attempt: its job is to learn, not to insist.
            let max_attempts = match admission {
                Admission::Probe => 1,
                _ => inner.options.max_attempts,
            };
            let attempts = AtomicU32::new(0);
            let result = self
                .with_retries(&req, parse, max_attempts, &attempts)
                .await;
            self.finish(call, ticket, result, attempts.load(Ordering::Relaxed))
        }
        .instrument(span)
        .await
    }

    /// For a call that may not wait (an opportunistic read) while the partner asked for a
    /// pause: the error that leaves the partner alone.
    fn paused_for_optional(&self, call: CallKind) -> Option<PartnerError> {
        if !crate::partner::patience::remaining().is_zero() {
            return None;
        }
        let busy = *self
            .inner
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let until = busy.filter(|u| *u > Instant::now())?;
        let mut e = PartnerError::local(
            PartnerErrorKind::Unavailable,
            call,
            &self.inner.site,
            "the partner asked for a pause; an optional call is not sent",
        );
        e.retry_after = Some(until - Instant::now());
        Some(e)
    }

    /// Up to `max_attempts` attempts with jittered backoff, within the call deadline and what
    /// the request may wait; counts the attempts sent in `attempts`.
    async fn with_retries<T: Send>(
        &self,
        req: &Prepared,
        parse: &ParseFn<'_, T>,
        max_attempts: u32,
        attempts: &AtomicU32,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let budget = Budget::new(Duration::from_millis(inner.options.call_deadline_ms));
        let backoff = FullJitter::new(
            Duration::from_millis(inner.options.backoff_base_ms),
            Duration::from_millis(inner.options.backoff_max_ms),
            max_attempts - 1,
        );
        // A plain loop rather than a retry combinator: its closures made rustc unable to
        // prove the future `Send` inside spawned tasks.
        let mut backoff = backoff;
        loop {
            let started = Instant::now();
            let r = self.attempt(req, attempts, budget.remaining(), parse).await;
            budget.spend(started.elapsed());
            let e = match r {
                Ok(v) => break Ok(v),
                Err(e) if !e.is_retryable() => break Err(e),
                Err(e) => e,
            };
            if let Some(pause) = e.retry_after.filter(|_| e.status.is_some()) {
                *inner.busy_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + pause);
            }
            let Some(next) = backoff.next() else {
                break Err(e);
            };
            // `Retry-After` is a floor under the jittered wait; never wait past the deadline,
            // nor past what an IdP's request may wait (it answers 503 + Retry-After instead).
            let wait = next.max(e.retry_after.unwrap_or_default());
            if wait >= crate::partner::patience::remaining() {
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    "no retry: the request may not wait that long"
                );
                break Err(e);
            }
            if !budget.reserve_wait(wait) {
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    "no retry: the wait would pass the call deadline"
                );
                break Err(e);
            }
            crate::partner::patience::spend(wait);
            tracing::info!(
                error = %e.message,
                status = e.status,
                retry_in_ms = wait.as_millis() as u64,
                "transient partner failure, retrying"
            );
            self.sleeper.sleep(wait).await;
        }
    }

    /// Records a finished call (circuit, call record, log) and returns its result with the
    /// attempts it sent.
    fn finish<T>(
        &self,
        call: CallKind,
        ticket: circuit::Ticket,
        result: Result<T, PartnerError>,
        sent: u32,
    ) -> Result<T, PartnerError> {
        let inner = &self.inner;
        let outcome = match &result {
            Ok(_) => Outcome::Answered,
            Err(e) if e.kind == PartnerErrorKind::Transient => Outcome::Failed,
            Err(e) if e.kind == PartnerErrorKind::Unavailable => Outcome::Neutral,
            Err(_) => Outcome::Answered,
        };
        ticket.record(outcome, Instant::now());
        self.observer
            .circuit(&inner.site, inner.circuit.is_open(Instant::now()));
        crate::partner::record::record(crate::partner::record::CallRecord {
            site: inner.site.clone(),
            call: call.as_str(),
            outcome: match &result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.kind.to_string(),
            },
            status: result.as_ref().err().and_then(|e| e.status),
            attempts: sent,
        });
        result.map_err(|mut e| {
            e.attempts = sent;
            if e.kind == PartnerErrorKind::Auth {
                tracing::error!(status = e.status, error = %e.message, "partner refused the site's credentials or the change");
            } else if e.kind == PartnerErrorKind::NotFound {
                // An answer, not a failure: lookups before creates expect it.
                tracing::debug!(status = e.status, attempts = sent, error = %e.message, "partner: not found");
            } else {
                tracing::warn!(kind = %e.kind, status = e.status, attempts = sent, error = %e.message, "partner call failed");
            }
            e
        })
    }

    /// One HTTP attempt.
    async fn attempt<T: Send>(
        &self,
        req: &Prepared,
        attempts: &AtomicU32,
        remaining: Duration,
        parse: &ParseFn<'_, T>,
    ) -> Result<Parsed<T>, PartnerError> {
        let inner = &self.inner;
        let call = req.call;
        let waited = Instant::now();
        let acquired = inner
            .limiter
            .acquire_paced(remaining, crate::partner::patience::remaining())
            .await;
        let _permit = match acquired {
            Ok(p) => p,
            Err(saturated) => {
                self.observe(call, 0, None, CallOutcome::Rejected, Duration::ZERO);
                let (message, retry_after) = match saturated {
                    Saturated::Concurrency => (
                        "no concurrency slot for this site before the call deadline",
                        None,
                    ),
                    Saturated::Rate(w) => {
                        ("the local rate limit for this site is saturated", Some(w))
                    }
                };
                let mut e =
                    PartnerError::local(PartnerErrorKind::Unavailable, call, &inner.site, message);
                e.retry_after = retry_after;
                return Err(e);
            }
        };
        // Counted only once a request really goes out.
        let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let remaining = remaining.saturating_sub(waited.elapsed());
        let timeout = Duration::from_millis(inner.options.request_timeout_ms).min(remaining);
        let started = Instant::now();
        let mut builder = inner
            .http
            .request(req.method.clone(), req.url.clone())
            .header(wire::PARTNER_AUTH_HEADER.clone(), inner.auth.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(wire::CONTENT_TYPE_JSON),
            )
            .timeout(timeout);
        if let Some(email) = &req.email {
            builder = builder.header(wire::EMAIL_HEADER.clone(), email.clone());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let result = self.send(builder, call, timeout, parse).await;
        let latency = started.elapsed();
        let span = tracing::Span::current();
        let status = match &result {
            Ok((status, _)) => Some(*status),
            Err(e) => e.status,
        };
        span.record("attempt", n);
        span.record("latency_ms", latency.as_millis() as u64);
        if let Some(s) = status {
            span.record("status", s);
        }
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => CallOutcome::Failed(e.kind),
        };
        // What the answer tells of the key: refused, accepted (any other answer from past the
        // partner's authentication), or nothing (no answer, 5xx, 429, and a 403 to a write,
        // which may refuse that change or the key: it neither parks the site nor clears a
        // refusal).
        match status {
            Some(s) if crate::partner::error::status_refuses_key(s, call) => {
                self.note_key(KeyState::Refused)
            }
            Some(s)
                if (200..300).contains(&s)
                    || ((400..500).contains(&s) && !matches!(s, 403 | 408 | 425 | 429)) =>
            {
                self.note_key(KeyState::Accepted)
            }
            _ => {}
        }
        self.observe(call, n, status, outcome, latency);
        tracing::debug!(
            attempt = n,
            status,
            latency_ms = latency.as_millis() as u64,
            "partner attempt"
        );
        result.map(|(_, parsed)| parsed)
    }

    async fn send<T>(
        &self,
        builder: reqwest::RequestBuilder,
        call: CallKind,
        timeout: Duration,
        parse: &ParseFn<'_, T>,
    ) -> Result<(u16, Parsed<T>), PartnerError> {
        let transport = |e: reqwest::Error, status: Option<u16>| {
            let what = if e.is_timeout() {
                format!("no complete answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("cannot connect: {}", error_chain(&e))
            } else if e.is_body() || e.is_decode() {
                format!("the answer was cut short: {}", error_chain(&e))
            } else {
                format!("request failed: {}", error_chain(&e))
            };
            PartnerError {
                kind: PartnerErrorKind::Transient,
                call,
                site: self.inner.site.clone(),
                status,
                message: self.redact(what),
                retry_after: None,
                attempts: 0,
            }
        };
        let response = builder.send().await.map_err(|e| transport(e, None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(&wire::RETRY_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await;
        if status.is_success() {
            let body = body.map_err(|e| transport(e, Some(status.as_u16())))?;
            return match parse(&body) {
                Ok(parsed) => Ok((status.as_u16(), parsed)),
                Err(pe) => Err(PartnerError {
                    kind: if pe.truncated {
                        PartnerErrorKind::Transient
                    } else {
                        PartnerErrorKind::Invalid
                    },
                    call,
                    site: self.inner.site.clone(),
                    status: Some(status.as_u16()),
                    message: self.redact(pe.message),
                    retry_after: None,
                    attempts: 0,
                }),
            };
        }
        // An error body that cannot be read still has a status to classify.
        let body = body.unwrap_or_default();
        let mut message = wire::error_message(&body);
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("no error text")
                .to_owned();
        }
        if status.is_redirection() {
            message = format!("unexpected redirect (not followed): {message}");
        }
        let kind =
            PartnerErrorKind::from_status(status.as_u16(), wire::message_says_exists(&message));
        Err(PartnerError {
            kind,
            call,
            site: self.inner.site.clone(),
            status: Some(status.as_u16()),
            message: self.redact(message),
            retry_after,
            attempts: 0,
        })
    }

    fn observe(
        &self,
        call: CallKind,
        attempt: u32,
        status: Option<u16>,
        outcome: CallOutcome,
        latency: Duration,
    ) {
        self.observer.observe(&CallEvent {
            site: &self.inner.site,
            call,
            attempt,
            status,
            outcome,
            latency,
        });
    }

    /// Removes the API key from text that came from the network, in case a server echoes it.
    fn redact(&self, text: String) -> String {
        let key = self.inner.api_key.expose();
        if !key.is_empty() && text.contains(key) {
            text.replace(key, "***")
        } else {
            text
        }
    }
}
