//! Fleet incidents: when the whole chain stops (or most of a fleet stalls at once), the
//! policy records `status.fleetIncident` (`ChainHalted` / `MassStall`) under its own field
//! manager, and tells of it. A halt is not a node fault: it never restarts a node.

use super::{FleetKey, Monitor};
use crate::api::{FleetIncident, MonitorPolicy};
use crate::health::{FleetView, Incident};
use crate::notice::{self, Notice, What};
use crate::status::Manager;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// One fleet's incident as this process knows it. After a start the policy may still show an
/// incident that ended while no Vigil was watching: once the fleet has been watched for longer
/// than `maxBlockStall` (long enough to see a halt), "no incident" is written once, which
/// closes such a leftover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentState {
    /// The incident last recorded (or none).
    pub kind: Option<Incident>,
    /// When this process started watching the fleet.
    pub since: Timestamp,
    /// Whether the recorded state has been checked against the policy since the start.
    pub settled: bool,
}

impl IncidentState {
    /// A fleet first watched at `now`.
    pub fn new(now: Timestamp) -> IncidentState {
        IncidentState {
            kind: None,
            since: now,
            settled: false,
        }
    }

    /// Takes the incident seen now; true when it must be recorded on the policy.
    pub fn update(&mut self, kind: Option<Incident>, now: Timestamp, stall: Duration) -> bool {
        let watched: Duration = now
            .duration_since(self.since)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let settle = !self.settled && watched > stall;
        if settle {
            self.settled = true;
        }
        let changed = kind != self.kind;
        self.kind = kind;
        changed || (settle && kind.is_none())
    }
}

/// The policy's `fleetIncident` after a change of the fleet's incident: a new record when one
/// starts (or changes kind), the current one closed when it ends, `None` when nothing changes.
pub fn incident_record(
    chain: &str,
    kind: Option<Incident>,
    current: Option<FleetIncident>,
    view: &FleetView,
    now: Timestamp,
) -> Option<FleetIncident> {
    let at = view
        .highest
        .map(|h| format!(" (highest block #{h})"))
        .unwrap_or_default();
    match kind {
        Some(k) => {
            let (affected, message) = match k {
                Incident::ChainHalted => (
                    view.members,
                    format!(
                        "No validator of chain {chain} under this policy sees new blocks{at}: the chain halted; this is not a node fault, so no node is restarted for it"
                    ),
                ),
                Incident::MassStall => (
                    view.stalled,
                    format!(
                        "{} of {} validators of chain {chain} under this policy stopped advancing at once{at}: a common cause, not a fault of each node",
                        view.stalled, view.observed
                    ),
                ),
            };
            Some(FleetIncident {
                chain: chain.into(),
                kind: k.into(),
                since: Some(Time(now)),
                ended: None,
                affected,
                total: view.members,
                message,
            })
        }
        None => match current {
            Some(mut i) if i.ended.is_none() && i.chain == chain => {
                i.ended = Some(Time(now));
                i.message = format!("Ended: blocks advance again{at}. {}", i.message);
                Some(i)
            }
            _ => None,
        },
    }
}

impl Monitor {
    /// Records the start, change or end of a fleet incident in the policy's status (its own
    /// field manager), and tells of it.
    pub(super) async fn record_incident(
        &self,
        fk: &FleetKey,
        kind: Option<Incident>,
        view: &FleetView,
        now: Timestamp,
    ) {
        let (ns, policy, chain) = fk;
        let current = match self.writer.read::<MonitorPolicy>(ns, policy).await {
            Ok(Some(p)) => p.status.and_then(|s| s.fleet_incident),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading policy for fleet incident failed");
                return;
            }
        };
        let Some(incident) = incident_record(chain.as_str(), kind, current, view, now) else {
            return;
        };
        let status = serde_json::json!({ "fleetIncident": incident });
        if let Err(e) = self
            .writer
            .apply::<MonitorPolicy, _>(ns, policy, Manager::Fleet, &status, None)
            .await
        {
            tracing::warn!(policy = %policy, error = %e, "writing the fleet incident failed");
            return;
        }
        let (what, reason) = match kind {
            Some(k) => (What::FleetIncidentOpened, k.as_str()),
            None => (What::FleetIncidentClosed, "FleetRecovered"),
        };
        self.tell(
            Notice::new(
                notice::reference::<MonitorPolicy>(ns, policy),
                what,
                reason,
                incident.message,
            )
            .warning(kind.is_some())
            .action("FleetView"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(stalled: u32) -> FleetView {
        FleetView {
            highest: Some(500),
            highest_changed_at: None,
            members: 10,
            observed: 10,
            stalled,
        }
    }

    #[test]
    fn incidents_open_and_close() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let open = incident_record("substrate", Some(Incident::MassStall), None, &view(6), t0)
            .expect("a new incident");
        assert_eq!(
            (open.kind, open.affected, open.total),
            (crate::api::FleetIncidentKind::MassStall, 6, 10)
        );
        assert!(open.message.contains("6 of 10"), "{}", open.message);
        assert!(open.ended.is_none());
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let closed = incident_record("substrate", None, Some(open.clone()), &view(0), t1)
            .expect("the incident ends");
        assert_eq!(closed.ended, Some(Time(t1)));
        assert_eq!(closed.since, open.since);
        assert!(closed.message.starts_with("Ended"), "{}", closed.message);
        // Nothing open (or another chain's incident): nothing to close.
        assert_eq!(
            incident_record("substrate", None, Some(closed), &view(0), t1),
            None
        );
        assert_eq!(
            incident_record("ethereum", None, Some(open), &view(0), t1),
            None
        );
        let halt = incident_record(
            "substrate",
            Some(Incident::ChainHalted),
            None,
            &view(10),
            t0,
        )
        .unwrap();
        assert!(halt.message.contains("halted"), "{}", halt.message);
    }

    /// The open / settle / close table: (seconds since watching began, incident seen,
    /// whether the policy must be written).
    #[test]
    fn the_incident_table() {
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let stall = Duration::from_secs(60);
        let halted = Some(Incident::ChainHalted);
        type Step = (i64, Option<Incident>, bool);
        let rows: &[(&str, &[Step])] = &[
            (
                "a leftover is closed once the fleet was watched long enough",
                &[(10, None, false), (61, None, true), (70, None, false)],
            ),
            (
                "open, hold, close",
                &[(80, halted, true), (90, halted, false), (100, None, true)],
            ),
            (
                "an incident seen before settling is written at once, and settling does not repeat it",
                &[
                    (5, Some(Incident::MassStall), true),
                    (65, Some(Incident::MassStall), false),
                ],
            ),
            (
                "a change of kind is written",
                &[(5, Some(Incident::MassStall), true), (20, halted, true)],
            ),
        ];
        for (name, steps) in rows {
            let mut st = IncidentState::new(t(0));
            for (at, seen, write) in steps.iter() {
                assert_eq!(st.update(*seen, t(*at), stall), *write, "{name} at {at}s");
            }
        }
    }
}
