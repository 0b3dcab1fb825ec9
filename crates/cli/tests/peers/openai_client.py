"""Calls an OpenAI-compatible endpoint with the official `openai` Python client.

Usage: openai_client.py BASE_URL MODE < REQUEST_JSON
  MODE: chat | stream | embeddings | models. The key comes from $OPENAI_API_KEY.
Prints one JSON line: {"content", "tool_arguments", "chunks", "usage"} (chat, stream),
{"vectors"} (embeddings), {"models"} (models), or {"error": {"status", "code", "message"}}.
"""

import json
import os
import sys

import openai


def main(base_url: str, mode: str, request: dict) -> dict:
    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ["OPENAI_API_KEY"], max_retries=0, timeout=60
    )
    try:
        if mode == "models":
            return {"models": sorted(model.id for model in client.models.list())}
        if mode == "embeddings":
            answer = client.embeddings.create(**request)
            return {"vectors": len(answer.data), "usage": answer.usage.prompt_tokens}
        if mode == "chat":
            answer = client.chat.completions.create(**request)
            message = answer.choices[0].message
            calls = message.tool_calls or []
            return {
                "content": message.content,
                "tool_arguments": [call.function.arguments for call in calls],
                "chunks": 1,
                "usage": answer.usage.model_dump() if answer.usage else None,
            }
        content, arguments, chunks, usage = "", {}, 0, None
        for chunk in client.chat.completions.create(stream=True, **request):
            chunks += 1
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    piece = call.function.arguments if call.function else None
                    arguments[call.index] = arguments.get(call.index, "") + (piece or "")
        return {
            "content": content,
            "tool_arguments": [arguments[key] for key in sorted(arguments)],
            "chunks": chunks,
            "usage": usage,
        }
    except openai.APIStatusError as err:
        body = err.body if isinstance(err.body, dict) else {}
        return {"error": {"status": err.status_code, "code": body.get("code"),
                          "message": body.get("message")}}
    except openai.APIError as err:
        body = err.body if isinstance(err.body, dict) else {}
        return {"error": {"status": None, "code": body.get("code"),
                          "message": body.get("message")}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], json.load(sys.stdin))))
