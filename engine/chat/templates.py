"""The DialoGPT prompt layout as a Jinja chat template, for serving engines.

The app builds a DialoGPT prompt itself (:func:`engine.chat.prompt.build_prompt`: every turn's
text followed by EOS, the prompt ending right after the last EOS, where the reply starts).
Serving engines (vLLM, TGI's Messages API, ``transformers serve``) only build prompts from a
tokenizer's chat template; a DialoGPT checkpoint has none, so their ``/v1/chat/completions``
refuses it or falls back to a default layout the model never saw. This template renders the same
text, so the engine tokenizes it into the same ids as ``build_prompt``. ``build_prompt`` stays the
source of truth for the app's own prompts; the template is what exported personas carry.

What the template cannot copy: ``build_prompt`` drops the oldest turns to fit the context window,
while an engine receives the whole message list and rejects one that is too long.
"""

from __future__ import annotations

# One line of Jinja, every tag trimmed (``{%- -%}``), so that no template whitespace reaches the
# prompt: only message text and EOS do. Why each part:
# - system messages are skipped: build_prompt has no place for a system prompt in the DialoGPT
#   layout (the model was trained on bare turns) and ignores the persona's;
# - content may be a string or OpenAI-style parts (vLLM and transformers serve pass either);
#   the text parts are joined without a separator, as the app sends one string per turn;
# - add_generation_prompt adds nothing: the prompt already ends where the reply begins.
DIALOGPT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] != 'system' -%}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is not none -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def dialogpt_chat_template() -> str:
    """The chat template that reproduces the app's EOS-joined DialoGPT prompt.

    Set it as ``tokenizer.chat_template`` (saved into ``chat_template.jinja`` or
    ``tokenizer_config.json`` by ``save_pretrained``) for engines that serve
    ``/v1/chat/completions``.
    """
    return DIALOGPT_CHAT_TEMPLATE
