"""Know before you ship: evaluate a routing policy offline on recorded outcomes, calibrate its escalation
thresholds with a statistical guarantee (offline or from live labels), and replay past jobs under a draft.

- `outcomes`: the recorded-outcomes file, the tier mapping, token counts and prices;
- `responders`: one tier's answer to one item, through the local model server or in memory;
- `simulate`: a policy run over the items with the live router and escalation rule, and the baselines;
- `curve`: the cost/quality curve over the cascade's thresholds;
- `calibrate`: Learn-then-Test threshold calibration (`binomial`: its exact p-values and bounds);
  `per_rule`: the same, each rule on its own items;
- `reliability`, `profile`: reliability diagrams and the workload profile;
- `history`: routing-only replay of past jobs under a draft version; `reexecute`: full re-execution of
  their stored inputs against the real deployments, within a cost cap;
- `labels`: labels from live history (reviewer decisions, shadow comparisons), their reliability and
  curve; `live_calibrate`: Learn-then-Test calibration from those labels;
- `records`: the `Evaluation` rows, the calibrated draft version, the ledger events;
- `services`, `history_services`: the runs the management commands (and the evaluation pages) call;
- `gsm8k`: the converter for the RouteLLM GSM8K responses.
"""
