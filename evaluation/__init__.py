"""Know before you ship: evaluate a routing policy offline on recorded outcomes, calibrate its escalation
thresholds with a statistical guarantee (offline or from live labels), and replay past jobs under a draft.
Routing never imports this app; its rows (`Evaluation`, `HistoryReplayRun`) are routing's models.

- `recorded/`: the recorded-outcomes file, the tier mapping, token counts and prices (`outcomes`); one
  tier's answer to one item (`responders`); a policy run over the items with the live router and
  escalation rule, and the baselines (`simulate`); the workload profile (`profile`); the converter for the
  RouteLLM GSM8K responses (`gsm8k`);
- `calibration/`: Learn-then-Test threshold calibration (`calibrate`; `cases`: an item as calibration sees
  it; `table`: every item's outcome under every setting; `certify`: the fixed-sequence test; `exact`: the
  exact test of each setting; `per_rule`: each rule on its own items), its validity study (`study`), the
  cost/quality curve (`curve`), reliability diagrams (`reliability`), labels from live history and their
  calibration (`labels`, `live`; `binomial`: the exact p-values of their 0/1 loss);
- `replay/`: routing-only replay of past jobs under a draft version (`routing_only`) and full
  re-execution of their stored inputs against the real deployments, within a cost cap (`reexecute`);
- `records`: the `Evaluation` rows, the calibrated draft version, the ledger events;
- `offline_runs`, `history_runs`: the runs the management commands and the evaluation pages call, on
  recorded outcomes and over past jobs; `queued_replays`: history replays started from the UI;
- `views`, `forms`, `selectors`, `reports`, `templatetags/`: the evaluation pages and the version page's part.
"""
