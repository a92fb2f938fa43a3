"""Know before you ship: evaluate a routing policy offline on recorded outcomes, calibrate its escalation
thresholds with a statistical guarantee (offline or from live labels), and replay past jobs under a draft.
Routing never imports this app; its rows (`Evaluation`, `HistoryReplayRun`) are routing's models.

- `recorded/`: runs on a recorded-outcomes file — `outcomes` (the file, tier mapping, tokens, prices),
  `responders` (one tier's answer to one item, through the local model server or in memory), `simulate`
  (a policy over the items with the live router and escalation rule, and the baselines), `profile` (the
  workload profile), `gsm8k` (the converter for the RouteLLM GSM8K responses);
- `calibration/`: `calibrate` (Learn-then-Test; `binomial`: its exact p-values and bounds), `per_rule`
  (each rule on its own items), `curve` (cost/quality over the thresholds), `reliability` (reliability
  diagrams), `labels` (labels from live history: reviewer decisions, shadow comparisons) and `live`
  (calibration from those labels);
- `replay/`: past jobs under a draft — `routing_only` (no model called; recorded confidences and costs),
  `reexecute` (stored inputs against the real deployments, within a cost cap), and the replays started
  from the UI and run by a worker;
- `offline_runs`, `history_runs`: the runs the management commands and the pages call; `records`: the
  `Evaluation` rows, the calibrated draft version, the ledger events;
- `views`, `forms`, `reports`, `templatetags/`: the evaluation pages and the version page's part.
"""
