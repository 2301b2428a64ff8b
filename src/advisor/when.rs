//! When a model is asked rather than the rules, pure: by the policy's `advisor.mode` and
//! what just happened. Every unhealthy moment gets advice from somebody; the rules are free
//! and answer whatever the model is not asked (or cannot answer: out of budget, failing,
//! refused).

use crate::api::AdvisorMode;

/// What just happened to a validator (or its fleet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// A new problem: it just turned unhealthy, or its symptoms changed.
    NewProblem,
    /// Still unhealthy, same symptoms, another probe.
    StillUnhealthy,
    /// The first remediation did not fix it.
    NotFixed,
    /// Vigil escalated it to a person.
    Escalated,
    /// A fleet incident opened (asked once for the whole fleet).
    FleetIncident,
}

/// Who answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The model (within budget; the fingerprint may still reuse earlier advice).
    Model,
    /// The rules.
    Rules,
    /// Nobody: the advice given for this problem still stands.
    Nobody,
}

/// Who answers at `moment` under `mode`. `hosted` is false for the `rules` provider.
pub fn ask(mode: AdvisorMode, hosted: bool, moment: Moment) -> Ask {
    use Moment as M;
    let model = matches!(
        (mode, moment),
        (AdvisorMode::EveryProbe, _)
            | (
                AdvisorMode::OnIssue,
                M::NewProblem | M::NotFixed | M::Escalated | M::FleetIncident
            )
            | (
                AdvisorMode::OnEscalation,
                M::NotFixed | M::Escalated | M::FleetIncident
            )
    );
    match (model && hosted, moment) {
        (true, _) => Ask::Model,
        (false, M::StillUnhealthy) => Ask::Nobody,
        (false, _) => Ask::Rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AdvisorMode as Mode;
    use Ask::{Model, Nobody, Rules};
    use Moment as M;

    #[test]
    fn modes_pick_the_model_or_the_rules() {
        let moments = [
            M::NewProblem,
            M::StillUnhealthy,
            M::NotFixed,
            M::Escalated,
            M::FleetIncident,
        ];
        let table = [
            (Mode::OnIssue, [Model, Nobody, Model, Model, Model]),
            // The cheap tier: the rules take the first remediation.
            (Mode::OnEscalation, [Rules, Nobody, Model, Model, Model]),
            (Mode::EveryProbe, [Model, Model, Model, Model, Model]),
        ];
        for (mode, want) in table {
            for (m, w) in moments.iter().zip(want) {
                assert_eq!(ask(mode, true, *m), w, "{mode:?} {m:?}");
            }
        }
        // The rules provider never calls out, in any mode.
        for mode in [Mode::OnIssue, Mode::OnEscalation, Mode::EveryProbe] {
            for m in moments {
                assert_ne!(ask(mode, false, m), Model);
            }
        }
    }
}
