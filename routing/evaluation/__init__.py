"""Know before you ship: evaluate a routing policy offline on recorded outcomes, calibrate its escalation
thresholds with a statistical guarantee, and replay past jobs under a draft version.

- `outcomes`: the recorded-outcomes file, the tier mapping, token counts and prices;
- `responders`: one tier's answer to one item, through the local model server or in memory;
- `simulate`: a policy run over the items with the live router and escalation rule, and the baselines;
- `calibrate`: Learn-then-Test threshold calibration (`binomial`: its exact p-values and bounds);
- `reliability`, `profile`: reliability diagrams and the workload profile;
- `history`: routing-only replay of past jobs under a draft version;
- `records`: the `Evaluation` rows and the calibrated draft policy version;
- `services`: the runs the management commands call;
- `gsm8k`: the converter for the RouteLLM GSM8K responses.
"""
