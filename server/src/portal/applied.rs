//! What a change did, as the use case reported it: applied, not applied (and
//! what to run), or nothing to apply.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::html::{notice, page, segment, Viewer};

/// A change through the portal that applies the allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Created,
    Saved,
    Applied,
}

/// The answer to a change, from what applying the allocation reported,
/// as `slicectl` and the API report it:
/// - every step done: back to the user's page with the fixed message;
/// - a step failed: a page with what failed and what to run, 500 (the
///   change is kept, as the CLI keeps it, but the limits in force are not
///   the saved ones);
/// - nothing to apply (no system account): a page that says so (409 when
///   applying was all that was asked, as `slicectl apply NAME` fails).
pub(super) fn after_apply(
    viewer: &Viewer<'_>,
    name: &str,
    change: Change,
    report: Option<&libdiycloud::usecases::apply::ApplyReport>,
) -> Response {
    let link = format!("/portal/admin/users/{}", segment(name));
    let failed = report.and_then(|r| r.error());
    let skipped = report.and_then(|r| r.skipped());
    let (status, notices) = match (failed, skipped, change) {
        (Some(error), _, _) => {
            let what = match change {
                Change::Created => "The user was created, but applying their allocation failed",
                Change::Saved => "The change was saved, but applying it failed",
                Change::Applied => "Applying the allocation failed",
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                notice(
                    "error",
                    &format!(
                        "{what}: {error}. The limits in force are not the ones saved. Once the cause is fixed, use \"Apply the allocation again\" on the user's page, or run `slicectl apply {name}` as root (`slicectl doctor` checks the node)."
                    ),
                ),
            )
        }
        (None, Some(reason), Change::Applied) => (
            StatusCode::CONFLICT,
            notice(
                "error",
                &format!(
                    "Nothing was applied: {reason}, so there is nothing to apply on this node."
                ),
            ),
        ),
        (None, Some(reason), _) => (
            StatusCode::OK,
            html! {
                (notice(
                    "ok",
                    if change == Change::Created {
                        "The user was created."
                    } else {
                        "Saved."
                    },
                ))
                (notice(
                    "error",
                    &format!("Nothing was applied: {reason}. The limits are applied when the user logs in on a node where they have a Linux account."),
                ))
            },
        ),
        (None, None, _) => {
            let done = match change {
                Change::Created => "created",
                Change::Saved => "saved",
                Change::Applied => "applied",
            };
            return Redirect::to(&format!("{link}?done={done}")).into_response();
        }
    };
    page(
        status,
        name,
        Some(viewer),
        html! {
            h1 { (name) }
            (notices)
            p { a href=(link) { "Back to the user's page" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use libdiycloud::usecases::apply::{ApplyReport, Step, StepOutcome, StepReport};

    fn report(outcome: StepOutcome) -> ApplyReport {
        ApplyReport {
            username: "ann".into(),
            uid: Some(1234),
            steps: vec![StepReport {
                step: Step::Slice,
                outcome,
            }],
            env: Default::default(),
        }
    }

    fn text(response: Response) -> (StatusCode, Option<String>, String) {
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .and_then(|rt| {
                rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .map_err(std::io::Error::other)
            })
            .unwrap_or_default();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Every change that applies (the create form, the edit form, "Apply
    /// the allocation again") says what `apply` reported.
    #[test]
    fn every_change_reports_what_apply_reported() {
        let viewer = Viewer {
            name: "boss",
            admin: true,
            csrf: "token",
        };
        let failed = report(StepOutcome::Failed {
            target: Some("user-1234.slice".into()),
            error: "cannot reach systemd on the system bus: <gone>".into(),
        });
        let applied = report(StepOutcome::Applied {
            target: "user-1234.slice".into(),
            settings: vec!["MemoryMax=1G".into()],
            changed: true,
            warning: None,
        });
        let skipped = report(StepOutcome::Skipped {
            reason: "no system account".into(),
        });
        for (change, done, said) in [
            (
                Change::Created,
                "created",
                "The user was created, but applying their allocation failed",
            ),
            (
                Change::Saved,
                "saved",
                "The change was saved, but applying it failed",
            ),
            (Change::Applied, "applied", "Applying the allocation failed"),
        ] {
            let (status, location, page) = text(after_apply(&viewer, "ann", change, Some(&failed)));
            assert_eq!(
                (status, location),
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            );
            assert!(page.contains(said), "{change:?}: {page}");
            assert!(
                page.contains(
                    "user-1234.slice: cannot reach systemd on the system bus: &lt;gone&gt;"
                ),
                "{page}"
            );
            assert!(page.contains("slicectl apply ann"), "{page}");
            assert!(
                !page.contains("notice ok"),
                "{change:?}: no success beside it"
            );

            let (status, location, _) = text(after_apply(&viewer, "ann", change, Some(&applied)));
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert_eq!(
                location.as_deref(),
                Some(format!("/portal/admin/users/ann?done={done}").as_str())
            );

            let (status, _, page) = text(after_apply(&viewer, "ann", change, Some(&skipped)));
            let expected = if change == Change::Applied {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{change:?}");
            assert!(
                page.contains("Nothing was applied: no system account"),
                "{page}"
            );
        }
        // No limit changed (nothing applied, nothing to report): saved.
        let (status, location, _) = text(after_apply(&viewer, "ann", Change::Saved, None));
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            location.as_deref(),
            Some("/portal/admin/users/ann?done=saved")
        );
    }
}
