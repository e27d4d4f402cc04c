//! Property tests of what the clients read from providers: error answers
//! and describe pages, for all three providers. Whatever comes back, a
//! client never panics, and a failure is always a classified error.

use proptest::prelude::*;
use serde_json::json;

use super::{
    DescribedRule, Operation, ProviderError,
    baidu::{api as baidu_api, errors as baidu},
    ecs::{api as alibaba_api, apsara::errors as apsara, errors as alibaba},
    fixtures::{any_response, classified_well, json_value, operation, response},
    http::HttpResponse,
};

/// Each provider's reading of a failed answer, and its code table.
type Reader = fn(Operation, &HttpResponse) -> ProviderError;
type Table = fn(Operation, u16, &str) -> super::ErrorKind;
const READERS: [(&str, Reader, Table); 2] = [
    ("alibaba", alibaba::error_from_response, alibaba::classify),
    ("baidu", baidu::error_from_response, baidu::classify),
];

/// Ports a described rule may carry: a real range or none.
fn sane(rule: &DescribedRule) -> bool {
    let real = |p: &super::PortRange| p.from >= 1 && p.from <= p.to;
    rule.rule.ports.is_none_or(|p| real(&p)) && rule.rule.source_ports.is_none_or(|p| real(&p))
}

fn describe_pages(body: &[u8]) -> Vec<Result<Vec<DescribedRule>, serde_json::Error>> {
    vec![
        alibaba_api::parse_describe(body).map(|page| page.rules),
        baidu_api::parse_describe(body),
    ]
}

proptest! {
    /// Any answer at all, however mangled, becomes an error with a code, a
    /// message and the kind the provider's code table gives that code.
    #[test]
    fn any_answer_yields_a_classified_error(response in any_response(), op in operation()) {
        for (provider, read, table) in READERS {
            let err = read(op, &response);
            classified_well(&err, &response)?;
            prop_assert_eq!(err.kind, table(op, response.status, &err.code), "{}", provider);
        }
        // Apsara Stack's gateways may fail with HTTP 200: a non-2xx is always a failure.
        let failure = apsara::failure(op, &response);
        prop_assert!(response.is_success() || failure.is_some());
        if let Some(err) = failure {
            classified_well(&err, &response)?;
            prop_assert_eq!(err.kind, apsara::classify(op, response.status, &err.code));
        }
    }

    /// The provider's own code and message come through as it sent them.
    #[test]
    fn an_error_keeps_the_provider_s_code_and_message(
        code in "\\PC{1,40}",
        message in "\\PC{1,80}",
        status in 400..=599_u16,
        op in operation(),
    ) {
        let pop = json!({"RequestId": "r-1", "Code": code, "Message": message}).to_string();
        let bce = json!({"requestId": "r-1", "code": code, "message": message}).to_string();
        let errors = [
            alibaba::error_from_response(op, &response(status, &pop, &[])),
            apsara::failure(op, &response(status, &pop, &[])).expect("a failure"),
            baidu::error_from_response(op, &response(status, &bce, &[])),
        ];
        for err in errors {
            prop_assert_eq!(&err.code, &code);
            prop_assert_eq!(&err.message, &message);
            prop_assert_eq!(err.request_id.as_deref(), Some("r-1"));
        }
    }

    /// Any bytes as a describe answer are read or refused; never a panic.
    #[test]
    fn any_describe_bytes_are_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..400)) {
        for rules in describe_pages(&body).into_iter().flatten() {
            prop_assert!(rules.iter().all(sane));
        }
    }

    /// JSON with the answers' field names and values of any type: every
    /// rule read from it is one the model can hold.
    #[test]
    fn any_describe_json_reads_into_sane_rules(value in json_value()) {
        for rules in describe_pages(value.to_string().as_bytes()).into_iter().flatten() {
            prop_assert!(rules.iter().all(sane));
        }
    }
}
