//! The step graph of a run. The CRD schema already guarantees unique names and that every
//! `runAfter` names a step; what CEL cannot check cheaply is that the graph has no cycle.

use crate::api::Step;
use std::collections::HashMap;

/// Why a step graph is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// Two steps share a name.
    #[error("step name {0:?} is used twice")]
    Duplicate(String),
    /// A `runAfter` entry names no step.
    #[error("step {step:?} runs after {missing:?}, which is not a step of this run")]
    Unknown {
        /// The step with the bad entry.
        step: String,
        /// The missing name.
        missing: String,
    },
    /// The steps wait on each other in a circle.
    #[error("steps wait on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Checks the graph; on success returns the steps in an order where each comes after its
/// `runAfter` steps (a topological order, stable with respect to the spec order).
pub fn check(steps: &[Step]) -> Result<Vec<usize>, DagError> {
    let mut index = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if index.insert(s.name.as_str(), i).is_some() {
            return Err(DagError::Duplicate(s.name.clone()));
        }
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
    for s in steps {
        let mut d = Vec::new();
        for r in &s.run_after {
            match index.get(r.as_str()) {
                Some(&j) => d.push(j),
                None => {
                    return Err(DagError::Unknown {
                        step: s.name.clone(),
                        missing: r.clone(),
                    });
                }
            }
        }
        deps.push(d);
    }
    // Depth-first search with colours; the path on the stack names the cycle if one is found.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        mark: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
        steps: &[Step],
    ) -> Result<(), DagError> {
        match mark[i] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..]
                    .iter()
                    .map(|&p| steps[p].name.clone())
                    .collect();
                cycle.push(steps[i].name.clone());
                return Err(DagError::Cycle(cycle));
            }
            Mark::New => {}
        }
        mark[i] = Mark::Open;
        path.push(i);
        for &d in &deps[i] {
            visit(d, deps, mark, path, order, steps)?;
        }
        path.pop();
        mark[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    for i in 0..steps.len() {
        let mut path = Vec::new();
        visit(i, &deps, &mut mark, &mut path, &mut order, steps)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::JobTemplate;

    fn step(name: &str, after: &[&str]) -> Step {
        Step {
            name: name.into(),
            run_after: after.iter().map(|s| s.to_string()).collect(),
            template: JobTemplate(serde_json::Map::new()),
            timeout: None,
        }
    }

    #[test]
    fn orders_a_diamond() {
        let steps = [
            step("d", &["b", "c"]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("a", &[]),
        ];
        let order = check(&steps).unwrap();
        let pos = |n: &str| order.iter().position(|&i| steps[i].name == n).unwrap();
        assert!(pos("a") < pos("b") && pos("a") < pos("c"));
        assert!(pos("b") < pos("d") && pos("c") < pos("d"));
    }

    #[test]
    fn names_the_cycle() {
        let steps = [step("a", &["c"]), step("b", &["a"]), step("c", &["b"])];
        let err = check(&steps).unwrap_err();
        assert_eq!(
            err,
            DagError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()])
        );
        assert_eq!(
            err.to_string(),
            "steps wait on each other in a cycle: a -> c -> b -> a"
        );
    }

    #[test]
    fn refuses_duplicates_and_unknown_names() {
        assert_eq!(
            check(&[step("a", &[]), step("a", &[])]),
            Err(DagError::Duplicate("a".into()))
        );
        assert!(matches!(
            check(&[step("a", &["zz"])]),
            Err(DagError::Unknown { .. })
        ));
    }

    #[test]
    fn self_loop_is_a_cycle() {
        assert!(matches!(
            check(&[step("a", &["a"])]),
            Err(DagError::Cycle(_))
        ));
    }
}
