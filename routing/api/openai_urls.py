from django.urls import path, re_path

from routing.api import openai, openai_fallback, openai_models, responses, responses_items

urlpatterns = [
    path("chat/completions", openai.ChatCompletionsApi.as_view(), name="openai-chat-completions"),
    path("models", openai.ModelsApi.as_view(), name="openai-models"),
    path("responses", responses.ResponsesApi.as_view(), name="openai-responses"),
    path("responses/<str:response_id>", responses.ResponseApi.as_view(), name="openai-response"),
    path(
        "responses/<str:response_id>/input_items",
        responses_items.ResponseInputItemsApi.as_view(),
        name="openai-response-input-items",
    ),
    path("models/<path:model_id>", openai_models.ModelApi.as_view(), name="openai-model"),
    # Last: any other /v1/ path is a JSON 404 in OpenAI's shape, not an HTML page.
    re_path(r"^.*$", openai_fallback.UnknownPathApi.as_view(), name="openai-unknown"),
]
