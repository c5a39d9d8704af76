"""Writes tests/data/adversarial.jsonl and adversarial_array.json: every format/empty/length/hygiene/duplicate/volume
problem at a known line, next to clean records that must not be flagged.

The committed files are what the tests read (their bytes matter: BOM, CRLF, invalid UTF-8, a truncated end);
this script documents how they were made. Line numbers are asserted in tests/test_audit_cli.py.

    python tests/data/make_adversarial.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = " ".join(f"Step {i}: measure the flour, mix it with water and knead the dough for a minute." for i in range(1, 26))


def rec(**fields) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def conv(*turns: tuple[str, str], **extra) -> bytes:
    return rec(conversations=[{"from": who, "value": text} for who, text in turns], **extra)


# (line, bytes) in file order; line numbers are 1-based physical lines.
LINES: list[bytes] = [
    b"\xef\xbb\xbf" + rec(instruction="Name the largest planet in the solar system.", input="",
                          output="Jupiter is the largest planet in the solar system.", category="general"),  # 1 BOM
    rec(instruction="Give one tip for better sleep.", input="", output="Keep a regular bedtime, even on weekends.",
        category="general"),  # 2 clean; first of a duplicate group
    b'{"instruction": "broken", "output": }',  # 3 invalid JSON
    b"",  # 4 blank line
    b'["a", "b"]',  # 5 not an object
    rec(foo="bar", baz=1),  # 6 unknown format
    rec(instruction="List three colours.", output=["red", "green", "blue"]),  # 7 wrong-typed field
    conv(("robot", "Hello there, who are you?"), ("gpt", "I am an assistant that answers questions.")),  # 8 unknown role
    conv(("human", "Tell me about tea."), ("human", "Green tea in particular."),
         ("gpt", "Green tea is unoxidised and tastes grassy.")),  # 9 roles not alternating
    rec(messages=[{"role": "user", "content": "What is the boiling point of water?"},
                  {"role": "assistant", "content": "It boils at 100 degrees Celsius at sea level."},
                  {"role": "user", "content": "And on a mountain?"}]),  # 10 ends with the user
    rec(instruction="Describe the colour blue.", input="", output="   "),  # 11 empty output
    rec(instruction="", input="", output="This answer has no question in front of it."),  # 12 empty instruction
    conv(("human", "Tell me a joke."), ("gpt", ""), ("human", "Please?"),
         ("gpt", "Why did the chicken cross the road? To get to the other side."), system="You are funny."),  # 13 empty turn
    rec(instruction="What is six times seven?", input="", output="The answer is <b>42</b> &amp; that&#39;s final."),  # 14 HTML
    rec(instruction="Is a < b when a=1 and b=2? Also compare x<y for x=3, y=4.", input="",
        output="Yes, 1 < 2 so a < b holds, and 3 < 4 so x<y holds too.", category="general"),  # 15 clean: not HTML
    rec(instruction="Trans\u200blate this word: hello", input="", output="Bonjour means hello in French."),  # 16 zero-width
    rec(instruction="Write a sentence about bells.", input="", output="Line one\u0007 rings a bell\u000b and stops."),  # 17 controls
    b'{"instruction": "Spell caf\xc3\xa9 in Latin-1.", "input": "", "output": "caf\xe9 is the word."}',  # 18 invalid UTF-8
    rec(instruction="What does the sign say?", input="", output="The sign says 5\ufffd per cup today."),  # 19 U+FFFD
    rec(instruction="What is the capital of France?", input="", output="### Response: Paris is the capital of France."),  # 20
    rec(instruction="### 指令：翻译成英文\n你好", input="", output="Hello, nice to meet you."),  # 21 CJK template marker
    rec(instruction="Say hi in ChatML.", input="", output="<|im_start|>assistant\nSure, here it is: hi.<|im_end|>"),  # 22
    rec(instruction="Who are you?", input="", output="I am {{name}}, an assistant created by {{author}}."),  # 23 placeholder
    rec(instruction="Recommend a dessert.", input="", output="The cafÃ© serves crÃ¨me brÃ»lÃ©e, itâ€™s great."),  # 24 mojibake
    rec(instruction="用中文写一个词。", input="", output="ä¸\u00adæ–‡ 是乱码。"),  # 25 CJK mojibake of 中文
    rec(instruction="Give one tip for  better sleep.", input="", output="keep a regular bedtime, even on weekends."),  # 26 dup of 2
    rec(instruction="GIVE ONE TIP FOR BETTER SLEEP.", input="", output="Keep a regular bedtime,  even on weekends."),  # 27 dup of 2
    rec(instruction="Give one tip for better sleep.", input="", output="Drink coffee late at night."),  # 28 conflicts with 2
    rec(instruction="Explain how to make bread.", input="", output=LONG),  # 29 over-long with --max-tokens 200
    rec(instruction="Write an essay about the history of Rome.", input="", output="Ok."),  # 30 too short
    rec(instruction="Classify the sentiment as positive or negative: I love it.", input="", output="Positive",
        category="general"),  # 31 clean: label-like short answer
    rec(instruction="What is 2 + 2?", input="", output="4", category="general"),  # 32 clean: numeric short answer
    rec(instruction="请用一句话介绍长城。", input="",
        output="「长城」是中国古代的军事防御工程，全长两万多公里；《史记》也有记载。", category="general"),  # 33 clean CJK
    rec(instruction="How do I make text bold on a page?", input="",
        output="Wrap it in a `<b>` element:\n```\n<b>bold</b> &amp; done\n```", category="general"),  # 34 clean: markup in code
    rec(instruction="Describe this emoji: \U0001F9D9\u200d\u2642\ufe0f", input="",
        output="It shows a man mage \U0001F9D9\u200d\u2642\ufe0f casting a spell.", category="general"),  # 35 clean: emoji ZWJ
    rec(turns=["What is artificial intelligence?"]),  # 36 questions only
    rec(messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Name a primary colour."},
                  {"role": "assistant", "content": "Red is a primary colour."}], category="general"),  # 37 clean messages
    conv(("human", "Recommend a book."), ("gpt", "Try 'The Hobbit' by J. R. R. Tolkien."),
         ("human", "Why that one?"), ("gpt", "It is short, funny and a classic."), category="general"),  # 38 clean ShareGPT
    rec(instruction="Write an HTML snippet that shows a bold word.", input="", output="<b>word</b>",
        category="general"),  # 39 clean: markup is the subject
    rec(instruction="Name a rare gemstone.", input="", output="Painite is one of the rarest gemstones.", category="rare"),  # 40
    rec(instruction="Name another rare gemstone.", input="", output="Red beryl is extremely rare too.", category="rare"),  # 41
    b'{"instruction": "Last one", "output": "cut',  # 42 truncated last line, no newline
]


def main() -> None:
    (HERE / "adversarial.jsonl").write_bytes(b"\r\n".join(LINES))
    clean = [json.loads(LINES[1]), json.loads(LINES[14])]
    array = json.dumps(clean, ensure_ascii=False, indent=2)
    cut = array[: array.rindex("]")].rstrip() + ',\n  {"instruction": "interrupted wri'  # download cut mid-record
    (HERE / "adversarial_array.json").write_text(cut, encoding="utf-8")


if __name__ == "__main__":
    main()
