//! What `GET /v1/flows` selects: `verdict=drop|allow`, `app=NAME`, `limit=N`, `follow=true`.

use serde::Deserialize;

use super::record::{FlowRecord, FlowVerdict};

/// Records a request selects. An empty filter selects every record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Only records with this verdict.
    pub verdict: Option<FlowVerdict>,
    /// Only records with this app or network at either end.
    pub app: Option<String>,
}

impl FlowFilter {
    /// Whether `record` is selected.
    pub fn matches(&self, record: &FlowRecord) -> bool {
        self.verdict.is_none_or(|v| record.verdict == v)
            && self.app.as_deref().is_none_or(|app| record.involves(app))
    }
}

/// The query string of `GET /v1/flows` as it arrives: every value text, unknown keys refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    /// `drop` or `allow`.
    pub verdict: Option<String>,
    /// An app or network name.
    pub app: Option<String>,
    /// How many records, at least 1.
    pub limit: Option<String>,
    /// `true` or `false`.
    pub follow: Option<String>,
}

/// A validated `GET /v1/flows` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowRequest {
    /// Which records.
    pub filter: FlowFilter,
    /// Without `follow`: the newest this many selected records (the API's default when
    /// `None`). With `follow`: this many held records first, then new ones (none when `None`).
    pub limit: Option<usize>,
    /// Stream records as they arrive.
    pub follow: bool,
}

impl FlowQuery {
    /// Checks every value.
    ///
    /// # Errors
    /// A message naming the parameter and what it must be.
    pub fn validate(self) -> Result<FlowRequest, String> {
        let verdict = match self.verdict.as_deref() {
            None => None,
            Some("drop") => Some(FlowVerdict::Drop),
            Some("allow") => Some(FlowVerdict::Allow),
            Some(other) => return Err(format!("verdict must be drop or allow, not {other:?}")),
        };
        let app = match self.app {
            Some(app) if app.is_empty() => return Err("app must not be empty".into()),
            app => app,
        };
        let limit = match self.limit.as_deref() {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if limit > 0 => Some(limit),
                _ => {
                    return Err(format!(
                        "limit must be a whole number of at least 1, not {text:?}"
                    ));
                }
            },
        };
        let follow = match self.follow.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("follow must be true or false, not {other:?}")),
        };
        Ok(FlowRequest {
            filter: FlowFilter { verdict, app },
            limit,
            follow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::sample as flow;

    fn query(verdict: Option<&str>, app: Option<&str>, limit: Option<&str>) -> FlowQuery {
        FlowQuery {
            verdict: verdict.map(str::to_owned),
            app: app.map(str::to_owned),
            limit: limit.map(str::to_owned),
            follow: None,
        }
    }

    #[test]
    fn verdict_and_app_select_on_either_end() {
        let drop_in = flow(FlowVerdict::Drop, "frontend", "backend");
        let allow_out = flow(FlowVerdict::Allow, "backend", "legacy-db");
        let unnamed = flow(FlowVerdict::Drop, "", "");
        let drops = FlowFilter {
            verdict: Some(FlowVerdict::Drop),
            app: None,
        };
        assert!(drops.matches(&drop_in) && drops.matches(&unnamed));
        assert!(!drops.matches(&allow_out));
        let backend = FlowFilter {
            verdict: None,
            app: Some("backend".into()),
        };
        assert!(backend.matches(&drop_in) && backend.matches(&allow_out));
        assert!(!backend.matches(&unnamed));
        let both = FlowFilter {
            verdict: Some(FlowVerdict::Allow),
            app: Some("frontend".into()),
        };
        assert!(!both.matches(&drop_in) && !both.matches(&allow_out));
        assert!(FlowFilter::default().matches(&unnamed));
    }

    #[test]
    fn a_valid_query_becomes_a_request() {
        let request = query(Some("drop"), Some("frontend"), Some("20"))
            .validate()
            .expect("valid");
        assert_eq!(
            request,
            FlowRequest {
                filter: FlowFilter {
                    verdict: Some(FlowVerdict::Drop),
                    app: Some("frontend".into())
                },
                limit: Some(20),
                follow: false,
            }
        );
        let follow = FlowQuery {
            follow: Some("true".into()),
            ..FlowQuery::default()
        };
        assert!(follow.validate().expect("valid").follow);
        assert_eq!(
            FlowQuery::default().validate().expect("valid"),
            FlowRequest::default()
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter() {
        let refusal = |q: FlowQuery| q.validate().expect_err("refused");
        assert_eq!(
            refusal(query(Some("maybe"), None, None)),
            "verdict must be drop or allow, not \"maybe\""
        );
        assert_eq!(
            refusal(query(None, Some(""), None)),
            "app must not be empty"
        );
        for bad in ["0", "-1", "ten", "1.5", ""] {
            assert!(
                refusal(query(None, None, Some(bad))).starts_with("limit must be"),
                "{bad:?}"
            );
        }
        let follow = FlowQuery {
            follow: Some("yes".into()),
            ..FlowQuery::default()
        };
        assert_eq!(refusal(follow), "follow must be true or false, not \"yes\"");
    }
}
