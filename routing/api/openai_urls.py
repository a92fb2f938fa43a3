from django.urls import path

from routing.api import openai, responses

urlpatterns = [
    path("chat/completions", openai.ChatCompletionsApi.as_view(), name="openai-chat-completions"),
    path("models", openai.ModelsApi.as_view(), name="openai-models"),
    path("responses", responses.ResponsesApi.as_view(), name="openai-responses"),
    path("responses/<str:response_id>", responses.ResponseApi.as_view(), name="openai-response"),
]
