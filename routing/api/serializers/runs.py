from __future__ import annotations

from rest_framework import serializers

from routing.api.serializers.jobs import JobSummaryOutputSerializer


class RunCallOutputSerializer(JobSummaryOutputSerializer):
    run_role = serializers.CharField()
    limits_reached = serializers.SerializerMethodField(
        help_text="The run limits this call met when it was routed: limit, value, observed, action."
    )

    def get_limits_reached(self, job) -> list[dict]:
        return list((job.run_admission or {}).get("reached", ()))


class RunOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    opened_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    calls = serializers.IntegerField(help_text="Calls admitted (routed) so far.")
    flagship_calls = serializers.IntegerField(
        help_text="Flagship calls as of the last admission: calls that used the flagship, and calls in flight "
        "that can reach it."
    )
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=8, help_text="The run's steps' recorded cost.")
    jobs = RunCallOutputSerializer(many=True, help_text="The run's calls, oldest first.")
