//! Logs: every line logged inside a request carries the request's id, the client's
//! `X-Request-Id` when it sent one, and the same id comes back in the answer.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Harness, Logs, Options, TOKEN};

/// Every line, parsed (the JSON format of production logs).
fn lines(logs: &Logs) -> Vec<Value> {
    logs.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `request` span of a log line, if it was logged inside a request.
fn request_span(line: &Value) -> Option<&Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "request")
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

// Current-thread runtime: the bridge's and the emulator's tasks run on this thread, under the
// subscriber set here.
#[tokio::test]
async fn every_line_inside_a_request_carries_its_request_id_given_or_generated() {
    crate::ask_scoped_subscribers_every_time();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::start(Options::default()).await;

    // The client's id is kept, logged and echoed (here on a failed authentication).
    let given = "okta-7f3a-given-id";
    let res = h
        .http
        .get(format!("{}/Users", h.base))
        .bearer_auth("not-a-token")
        .header("X-Request-Id", given)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["x-request-id"], given);

    // Without one, an id is made up and echoed; this request calls the partner.
    let res = h
        .http
        .post(format!("{}/Users", h.base))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(r#"{"userName":"ada@acme.example.com","name":{"givenName":"Ada","familyName":"L"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");

    let lines = lines(&logs);
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| request_span(l).is_some_and(|s| s["request_id"] == id))
            .collect()
    };
    let given_lines = of(given);
    let made_lines = of(&made);
    let messages = |ls: &[&Value]| ls.iter().map(|l| message(l).to_owned()).collect::<Vec<_>>();
    assert!(
        messages(&given_lines).contains(&"authentication failed".to_owned()),
        "{:?}",
        messages(&given_lines)
    );
    for wanted in [
        "started processing request",
        "partner attempt",
        "finished processing request",
    ] {
        assert!(
            messages(&made_lines).iter().any(|m| m == wanted),
            "no '{wanted}' line with the request id: {:?}",
            messages(&made_lines)
        );
    }
    // No line inside a request lacks an id, or has another one.
    for line in &lines {
        if let Some(span) = request_span(line) {
            let id = span["request_id"].as_str().unwrap_or("");
            assert!(id == given || id == made, "{line}");
        }
    }
    // The span carries the credential once authenticated, never the token.
    assert!(made_lines
        .iter()
        .any(|l| request_span(l).unwrap()["credential"] == "idp"));
    assert!(!lines.iter().any(|l| l.to_string().contains(TOKEN)));
}
