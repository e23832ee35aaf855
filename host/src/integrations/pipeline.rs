//! Running an integration: input processor -> connector operation -> output
//! processor, each step in its own fresh sandbox, stopping at the first
//! failing step and saying which one it was.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::definition::Definition;
use super::validate::Resolved;
use crate::callout::CalloutRecord;
use crate::sandbox::{ConnectorCall, Invocation, InvocationError, LogLine, Sandbox};

/// Which step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The input processor.
    InputProcessor,
    /// The connector operation.
    Connector,
    /// The output processor.
    OutputProcessor,
}

impl Step {
    /// The step's name as shown in errors and run records.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::InputProcessor => "input_processor",
            Step::Connector => "connector",
            Step::OutputProcessor => "output_processor",
        }
    }
}

/// What one step did, for the run record.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Which step.
    pub step: Step,
    /// Plugin that ran it.
    pub plugin: String,
    /// Connector operation, for the connector step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Whether it produced an output.
    pub ok: bool,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// What the plugin logged and printed.
    pub logs: Vec<LogLine>,
    /// Outbound requests it made.
    pub callouts: Vec<CalloutRecord>,
    /// Peak linear memory of its instance.
    pub peak_memory_bytes: usize,
}

/// A failed run: the step that failed and why.
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// The failing step.
    pub step: Step,
    /// Its error.
    pub error: InvocationError,
}

/// The outcome of a pipeline run.
#[derive(Debug)]
pub struct PipelineResult {
    /// The output document, or the failing step.
    pub output: Result<String, StepFailure>,
    /// Every step that ran, in order.
    pub steps: Vec<StepRecord>,
}

/// Who is running the pipeline, for the connector's context.
pub struct RunContext {
    /// The run id.
    pub run_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// Runs the pipeline on `input`.
pub async fn run(
    sandbox: &Sandbox,
    def: &Definition,
    plugins: &Resolved,
    input: String,
    ctx: &RunContext,
) -> PipelineResult {
    let mut steps = Vec::new();
    let mut doc = input;
    if let (Some(p), Some(step)) = (&plugins.input, &def.input_processor) {
        let inv = sandbox
            .process_with(p, &doc, Arc::new(step.config.clone()), &def.limits)
            .await;
        match record(&mut steps, Step::InputProcessor, p.name.clone(), None, inv) {
            Ok(out) => doc = out,
            Err(f) => {
                return PipelineResult {
                    output: Err(f),
                    steps,
                };
            }
        }
    }
    let call = ConnectorCall {
        operation: def.connector.operation.clone(),
        input: doc,
        bindings: def.bindings.clone(),
        config: Arc::new(def.connector.config.clone()),
        run_id: ctx.run_id.clone(),
        attempt: ctx.attempt,
        integration: Some(def.name.clone()),
        limits: def.limits.clone(),
    };
    let inv = sandbox.invoke(&plugins.connector, call).await;
    let op = Some(def.connector.operation.clone());
    doc = match record(
        &mut steps,
        Step::Connector,
        plugins.connector.name.clone(),
        op,
        inv,
    ) {
        Ok(out) => out,
        Err(f) => {
            return PipelineResult {
                output: Err(f),
                steps,
            };
        }
    };
    if let (Some(p), Some(step)) = (&plugins.output, &def.output_processor) {
        let inv = sandbox
            .process_with(p, &doc, Arc::new(step.config.clone()), &def.limits)
            .await;
        let output = record(&mut steps, Step::OutputProcessor, p.name.clone(), None, inv);
        return PipelineResult { output, steps };
    }
    PipelineResult {
        output: Ok(doc),
        steps,
    }
}

/// Records one step and hands on its output or failure.
fn record(
    steps: &mut Vec<StepRecord>,
    step: Step,
    plugin: String,
    operation: Option<String>,
    inv: Invocation,
) -> Result<String, StepFailure> {
    steps.push(StepRecord {
        step,
        plugin,
        operation,
        ok: inv.output.is_ok(),
        duration_ms: inv.duration.as_secs_f64() * 1000.0,
        error: inv.output.as_ref().err().map(InvocationError::to_json),
        logs: inv.logs,
        callouts: inv.callouts,
        peak_memory_bytes: inv.peak_memory_bytes,
    });
    inv.output.map_err(|error| StepFailure { step, error })
}
