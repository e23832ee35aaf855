//! Running an integration: input processor -> connector operation -> output
//! processor, each step in its own fresh sandbox, stopping at the first
//! failing step and saying which one it was.

use serde::Serialize;
use serde_json::Value;

use super::definition::Definition;
use super::validate::Resolved;
use crate::callout::CalloutRecord;
use crate::sandbox::{ConnectorCall, Invocation, InvocationError, LogLine, Sandbox};
use crate::store::JsonText;

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
    /// Callouts made but not recorded (refusals after the callout budget
    /// was spent, or once the host memory budget was).
    #[serde(skip_serializing_if = "is_zero")]
    pub callouts_dropped: usize,
    /// Peak linear memory of its instance.
    pub peak_memory_bytes: usize,
    /// Peak host memory it held (logs, records, buffered bodies).
    pub peak_host_memory_bytes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Largest step list kept with a run. Budgets bound each step already; this
/// keeps a run record well inside what the store writes in one row, so a run
/// is truncated with a marker, never lost.
pub const MAX_STEPS_BYTES: usize = 4 << 20;

/// The steps as stored with a run: whole when they fit [`MAX_STEPS_BYTES`],
/// otherwise with each step's logs and callouts cut to the first few (the
/// number halved until they fit, down to none, then errors too), each cut
/// step saying what was left out under `truncated`. Serialised once,
/// straight from the records.
pub fn steps_json(steps: &[StepRecord]) -> JsonText {
    steps_json_within(steps, MAX_STEPS_BYTES)
}

/// [`steps_json`] as a tree, for records that embed it in another document.
pub fn steps_value(steps: &[StepRecord]) -> Value {
    steps_json(steps).to_value()
}

fn steps_json_within(steps: &[StepRecord], max: usize) -> JsonText {
    let full = json_text(steps);
    if full.get().len() <= max {
        return full;
    }
    let most = steps
        .iter()
        .map(|s| s.logs.len().max(s.callouts.len()))
        .max()
        .unwrap_or(0);
    let mut keep = most / 2;
    loop {
        let cut: Vec<Value> = steps.iter().map(|s| cut_step(s, keep, keep == 0)).collect();
        let cut = json_text(&cut);
        if cut.get().len() <= max || keep == 0 {
            return cut;
        }
        keep /= 2;
    }
}

/// `value` serialised; records of plain data always serialise, so a
/// failure (which would be a bug) keeps `null` rather than lose the run.
fn json_text<T: Serialize + ?Sized>(value: &T) -> JsonText {
    JsonText::of(value).unwrap_or_else(|_| JsonText::parse("null".into()).expect("`null` is JSON"))
}

fn cut_step(step: &StepRecord, keep: usize, drop_error: bool) -> Value {
    let mut v = serde_json::to_value(step).unwrap_or(Value::Null);
    let logs = step.logs.len().saturating_sub(keep);
    let callouts = step.callouts.len().saturating_sub(keep);
    v["logs"] = serde_json::to_value(&step.logs[..keep.min(step.logs.len())]).unwrap_or(Value::Null);
    v["callouts"] =
        serde_json::to_value(&step.callouts[..keep.min(step.callouts.len())]).unwrap_or(Value::Null);
    let mut marker = serde_json::json!({"logs": logs, "callouts": callouts, "limit_bytes": MAX_STEPS_BYTES});
    if drop_error && step.error.is_some() {
        let size = step.error.as_ref().map_or(0, |e| e.to_string().len());
        if size > 64 * 1024 {
            v["error"] = serde_json::json!({"code": step.error.as_ref().and_then(|e| e.get("code")).cloned(), "message": "the error was too large to keep with the run"});
            marker["error_bytes"] = serde_json::json!(size);
        }
    }
    v["truncated"] = marker;
    v
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
            .process_with(p, &doc, step.config.clone(), &def.limits)
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
        config: def.connector.config.clone(),
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
            .process_with(p, &doc, step.config.clone(), &def.limits)
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
        callouts_dropped: inv.callouts_dropped,
        peak_memory_bytes: inv.peak_memory_bytes,
        peak_host_memory_bytes: inv.peak_host_memory_bytes,
    });
    inv.output.map_err(|error| StepFailure { step, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(lines: usize, line_bytes: usize) -> StepRecord {
        StepRecord {
            step: Step::Connector,
            plugin: "hostile".into(),
            operation: None,
            ok: true,
            duration_ms: 1.0,
            error: None,
            logs: (0..lines)
                .map(|i| LogLine {
                    level: "info".into(),
                    message: format!("{i}{}", "x".repeat(line_bytes)),
                    at_ms: 0,
                })
                .collect(),
            callouts: Vec::new(),
            callouts_dropped: 0,
            peak_memory_bytes: 0,
            peak_host_memory_bytes: 0,
        }
    }

    /// Steps too large for a run record are cut with a marker; small ones
    /// are kept whole.
    #[test]
    fn oversized_steps_are_truncated_with_a_marker() {
        let small = [step(3, 10)];
        assert_eq!(
            steps_json_within(&small, 10_000).to_value(),
            serde_json::to_value(&small).unwrap()
        );
        let big = [step(1000, 1000), step(10, 10)];
        let text = steps_json_within(&big, 100_000);
        assert!(text.get().len() <= 100_000);
        let v = text.to_value();
        let kept = v[0]["logs"].as_array().unwrap().len();
        assert!(kept > 0 && kept < 1000, "{kept}");
        assert_eq!(v[0]["truncated"]["logs"], 1000 - kept);
        assert_eq!(
            v[0]["logs"][0]["message"].as_str().unwrap().chars().next(),
            Some('0')
        );
    }
}
