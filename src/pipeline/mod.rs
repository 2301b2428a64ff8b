//! Pipeline runs, the pure parts: the step graph (`dag`), DAG progress over the Jobs
//! (`plan`), and what follows the end of a run: archive, verify, clean up (`lifecycle`).

pub mod dag;
pub mod lifecycle;
pub mod plan;
