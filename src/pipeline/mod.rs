//! Pipeline runs: pure DAG logic over the steps of a `PipelineRun`.

pub mod dag;
