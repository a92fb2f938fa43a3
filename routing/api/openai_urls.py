from django.urls import path

from routing.api import openai

urlpatterns = [
    path("chat/completions", openai.ChatCompletionsApi.as_view(), name="openai-chat-completions"),
    path("models", openai.ModelsApi.as_view(), name="openai-models"),
]
