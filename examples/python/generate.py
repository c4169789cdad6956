"""Greedy generation, streaming, chat, translation and QA from Python.

    python3 examples/python/generate.py "The capital of France is"
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))

import lamina  # noqa: E402


def main() -> None:
    prompt = sys.argv[1] if len(sys.argv) > 1 else "The capital of France is"
    with lamina.Model() as model, lamina.Session(model) as session:
        for piece in session.stream(prompt, max_tokens=32):
            print(piece, end="", flush=True)
        print()
        for message in ["Hi! Please remember the number 42.", "What number did I ask you to remember?"]:
            reply = session.chat(message, max_tokens=48)
            print(f"user: {message}\nassistant: {reply.text}")
        print("fr:", session.translate("Good morning!", "en", "fr"))
        print("answer:", session.answer("Where does Mira live?", context="Mira lives in Lisbon."))


if __name__ == "__main__":
    main()
