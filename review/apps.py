from django.apps import AppConfig


class ReviewConfig(AppConfig):
    """Everything a reviewer does: the queue, the job pages, the decisions (UI and REST) and their expiry.
    Its data (approval requests and decisions) are models of `routing`, where the pipeline opens them."""

    name = "review"
    verbose_name = "Review"
