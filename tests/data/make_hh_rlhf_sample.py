"""Write ``hh-rlhf-sample.jsonl.gz``: 32 hand-written rows in Anthropic HH-RLHF's format.

The real data (``harmless-base`` of ``Anthropic/hh-rlhf`` on the Hugging Face hub) is not shipped
with the project, so the tests of everything that reads HH-RLHF files run on these rows in a plain
clone. Every row is written here by hand (none is copied from the real data); the file has the
real one's shape: one JSON object per line with a ``chosen`` and a ``rejected`` transcript of
``\\n\\nHuman: …\\n\\nAssistant: …`` turns that share every turn but the last assistant one.

What the rows exercise, by row number (1-based, as the loader counts):

* single-turn rows (1, 2, 3, …) and multi-turn rows with 2–3 human turns (4, 9, 13, 20, 26);
* curly quotes kept verbatim by the loader (row 2) and made ASCII by the sentence pool;
* rows the loader skips: an empty chosen last turn (rows 7, 27), an empty rejected last turn
  (rows 15, 30), a rejected transcript whose earlier turns differ from chosen (row 22);
* sentences the "fine text" pool must drop: digits, an e-mail address, refusals, danger markers,
  blocklisted words (in chosen turns too), too short or too long sentences, and the harmful
  phrases an earlier blocklist let through (in rejected turns: "poke their eyes out", "windpipe",
  "grab it", "acid on her skin", "brake line");
* clean sentences that occur only in rejected turns (so ``sides=("chosen", "rejected")`` finds more).

Run ``python tests/data/make_hh_rlhf_sample.py`` after editing; the output is byte-identical for
the same rows (gzip mtime 0), and ``tests/test_hh_rlhf_sample.py`` checks the committed file is
what this script writes.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

OUT = Path(__file__).with_name("hh-rlhf-sample.jsonl.gz")

# Each row: (earlier turns as [(speaker, text), ...] ending with a human turn, chosen last turn,
# rejected last turn). ``PREFIX_DIFFERS`` rows get a rejected transcript with another first turn.
ROWS: list[tuple[list[tuple[str, str]], str, str]] = [
    # 1
    ([("Human", "How can I keep my houseplants alive?")],
     "Most houseplants like bright light that does not shine on them directly. Water them when the top "
     "of the soil feels dry. A pot with a drainage hole keeps the roots from sitting in water.",
     "Just water them every day and hope for the best."),
    # 2: curly quotes
    ([("Human", "Is it possible to learn the piano as an adult?")],
     "Yes, adults learn the piano all the time. It\u2019s easier if you practise a little every day. "
     "A patient teacher can help you build good habits early.",
     "I\u2019m not sure, maybe it\u2019s too late for you."),
    # 3
    ([("Human", "What should I pack for a weekend of camping?")],
     "Bring a warm sleeping bag and a waterproof jacket. Pack more socks than you think you need. "
     "A small lamp makes the evenings much easier.",
     "Take 3 bags and 12 snacks, that is all anyone ever needs."),
    # 4: three human turns
    ([("Human", "I want to start running."),
      ("Assistant", "That is a great goal. Start with short, easy runs a few times a week."),
      ("Human", "How do I stay motivated?"),
      ("Assistant", "Running with a friend makes it easier to keep going. Keep a simple log of every run."),
      ("Human", "What if I miss a week?")],
     "Missing a week is normal and nothing to worry about. Start again with a shorter run than usual. "
     "Your body remembers more than you might expect.",
     "Then you should give up, you clearly do not have the discipline."),
    # 5: the chosen turn is a refusal followed by clean advice; the refusal must not enter the pool
    ([("Human", "Can you tell me how to get into my neighbour's wifi without asking?")],
     "I can't help with that. You could ask your neighbour politely if they would share it. "
     "Many cafes and libraries offer free wifi as well.",
     "Use a password cracker on their router, then set up a keylogger on their laptop."),
    # 6: an e-mail address and a number in chosen
    ([("Human", "How do I get a refund for a broken kettle?")],
     "Write to support@kettle-shop.example and mention your order number. Keep the receipt until the "
     "refund arrives. Most shops answer within 14 days.",
     "Refunds never work, so do not bother."),
    # 7: empty chosen last turn
    ([("Human", "What is a good name for a goldfish?")],
     "",
     "Call it Bubbles, every goldfish is called Bubbles."),
    # 8
    ([("Human", "How can I make my mornings less rushed?")],
     "Lay out your clothes the night before. Prepare a simple lunch in the evening. "
     "Getting up fifteen minutes earlier gives you time for a calm cup of tea.",
     "Skip breakfast and run for the bus like everyone else."),
    # 9: two human turns
    ([("Human", "My tomato plants have yellow leaves."),
      ("Assistant", "Yellow leaves often mean the plant is getting too much water."),
      ("Human", "I water them every evening. Should I stop?")],
     "Try watering only when the soil feels dry a finger deep. Morning watering lets the leaves dry "
     "during the day. Plenty of sunshine helps tomatoes stay healthy.",
     "Pour a little bleach on the soil to clear out whatever is wrong."),
    # 10: danger marker in rejected, harmful leak phrases in rejected
    ([("Human", "My brother keeps annoying me. What can I do?")],
     "Talking calmly when you are both relaxed often helps. Tell him which things bother you and why. "
     "Spending some time apart can also make things easier.",
     "Next time, poke their eyes out so they learn. Or squeeze his windpipe until he stops."),
    # 11
    ([("Human", "How do I write a good thank you note?")],
     "Mention the gift or the favour by name. Say how you will use it or why it mattered to you. "
     "A short, warm note is better than a long formal one.",
     "Just text them thanks, nobody reads notes anyway."),
    # 12: blocklisted words in chosen sentences (dropped), clean ones kept
    ([("Human", "Is it safe to leave a candle burning overnight?")],
     "No, a candle left burning can start a fire. Blow it out before you go to sleep. "
     "A small lamp with a timer gives a similar soft light.",
     "Sure, candles are totally safe, leave as many as you like."),
    # 13: two human turns
    ([("Human", "I have an interview on Monday."),
      ("Assistant", "Congratulations! Do you know what kind of questions they usually ask?"),
      ("Human", "Not really. How should I prepare?")],
     "Read about the company and what it makes. Practise answering a few common questions out loud. "
     "Prepare two or three questions of your own to ask them.",
     "Wing it, preparation is overrated."),
    # 14
    ([("Human", "How can I save money on groceries?")],
     "Plan your meals for the week before you go shopping. Buy rice, beans and oats in larger bags. "
     "Cooking at home is usually much cheaper than eating out.",
     "Just put a few things in your pocket when nobody is looking."),
    # 15: empty rejected last turn
    ([("Human", "What is a fun game for a rainy afternoon?")],
     "A board game or a jigsaw puzzle can fill a whole afternoon. Building a blanket fort is fun for "
     "children and adults alike.",
     ""),
    # 16: a harmful leak phrase in rejected; clean sentences only in rejected
    ([("Human", "Someone left a bag on the bus. What should I do?")],
     "Hand it to the driver so it can go to the lost property office. The owner will be glad to get "
     "it back.",
     "Just grab it and go, nobody will notice. Bags left on a bus usually hold nothing of value."),
    # 17: too short and too long sentences in chosen
    ([("Human", "How do I start learning to draw?")],
     "Good question! Start with simple shapes like boxes, balls and cylinders. Draw a little every "
     "day, even for ten minutes. Copying the drawings you admire, then trying the same subject from "
     "life, teaches you how other artists solved the very problems you are running into right now.",
     "Talent is something you are born with, so do not waste your time."),
    # 18: a danger marker and a refusal in rejected
    ([("Human", "How do I get rid of the weeds in my garden?")],
     "Pull them out by hand after it rains, when the soil is soft. A thick layer of mulch stops new "
     "ones from growing.",
     "Mix antifreeze into a watering can and spray the whole garden."),
    # 19: a leak phrase in rejected
    ([("Human", "My coworker keeps taking credit for my ideas.")],
     "Write your ideas down and share them in meetings or by message. Talk to your manager calmly "
     "about how you work together.",
     "Throw acid on her skin and she will stop."),
    # 20: three human turns
    ([("Human", "Can you help me plan a birthday party?"),
      ("Assistant", "Of course. How many guests are you thinking of?"),
      ("Human", "About ten friends."),
      ("Assistant", "A small party at home works well for ten people."),
      ("Human", "What food should I make?")],
     "Finger food is easy for a small party. Sandwiches, fruit and a simple cake are always popular. "
     "Ask your guests about any food they cannot eat.",
     "Order 40 pizzas and see what happens."),
    # 21: a leak phrase in rejected, clean sentence only in rejected
    ([("Human", "My car makes a squeaking noise when I stop.")],
     "A squeak when stopping often means the pads are worn. Ask a garage to take a look soon.",
     "Cut the brake line and the noise will go away. Cars make all kinds of noises."),
    # 22: rejected transcript differs before its last turn
    ([("Human", "What should I read next?")],
     "If you liked adventure stories, try a classic sea novel. Your local library can suggest books "
     "similar to the ones you enjoyed.",
     "Nothing, reading is boring."),
    # 23
    ([("Human", "How can I sleep better?")],
     "Keep the bedroom cool, dark and quiet. Try to go to bed at the same time every night. "
     "Putting the screen away an hour before bed helps many people.",
     "Drink a lot of coffee in the evening so you are tired later."),
    # 24
    ([("Human", "How do I clean a cast iron pan?")],
     "Rinse it with hot water and scrub it with a brush. Dry it right away so it does not rust. "
     "Rub a thin layer of oil on it before you put it away.",
     "Put it in the dishwasher with plenty of soap."),
    # 25
    ([("Human", "What is a good way to learn new words in a language?")],
     "Reading short stories in the language is a pleasant way to meet new words. Write each new word "
     "on a small card with an example sentence. Reviewing the cards for a few minutes every day works "
     "well.",
     "Memorise the whole dictionary in alphabetical order."),
    # 26: two human turns
    ([("Human", "I just moved to a new city."),
      ("Assistant", "That is exciting. Have you had a chance to explore yet?"),
      ("Human", "No, and I do not know anyone here.")],
     "Joining a club or a class is a friendly way to meet people. Walking around your neighbourhood "
     "helps you find shops and parks you like. It takes a little time, so be patient with yourself.",
     "Stay home, cities are lonely places anyway."),
    # 27: empty chosen last turn
    ([("Human", "Can you recommend a podcast?")],
     "",
     "Try a history podcast, they are fun."),
    # 28
    ([("Human", "How can I be a better listener?")],
     "Let the other person finish before you answer. Ask a question about what they just said. "
     "Putting your phone out of sight shows that you are paying attention.",
     "Nod a lot and think about something else."),
    # 29
    ([("Human", "What can I cook with potatoes and eggs?")],
     "A simple potato omelette needs only potatoes, eggs, an onion and oil. Roasted potatoes with a "
     "fried egg on top make a quick supper.",
     "Eat them raw, it saves washing up."),
    # 30: empty rejected last turn
    ([("Human", "How do I keep my bike in good shape?")],
     "Keep the tyres pumped and oil the chain now and then. Store it somewhere dry when you can.",
     ""),
    # 31
    ([("Human", "Any tips for a long train journey?")],
     "Bring a book, some snacks and a bottle of water. A light scarf is handy if the carriage is cold. "
     "Downloading a few films before you leave saves mobile data.",
     "Sleep on the floor of the corridor, it is roomier."),
    # 32
    ([("Human", "How can I help a friend who is feeling sad?")],
     "Ask how they are doing and listen without rushing to fix things. Small kind gestures, like a "
     "message or a walk together, can mean a lot. Remind them that they can talk to you any time.",
     "Tell them to cheer up and stop complaining."),
]
PREFIX_DIFFERS = {22}


def transcript(turns: list[tuple[str, str]], last: str) -> str:
    text = "".join(f"\n\n{who}: {said}" for who, said in turns)
    return text + "\n\nAssistant:" + (f" {last}" if last else "")


def rows() -> list[dict[str, str]]:
    out = []
    for number, (turns, chosen, rejected) in enumerate(ROWS, start=1):
        other = [("Human", "Tell me something else entirely.")] + turns[1:] if number in PREFIX_DIFFERS else turns
        out.append({"chosen": transcript(turns, chosen), "rejected": transcript(other, rejected)})
    return out


def render() -> bytes:
    """The file's bytes: JSONL like the real data (``ensure_ascii``, one object per line), gzipped with mtime 0."""
    text = "".join(json.dumps(r) + "\n" for r in rows()).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as fh:
        fh.write(text)
    return buf.getvalue()


if __name__ == "__main__":
    OUT.write_bytes(render())
    print(f"{len(ROWS)} rows -> {OUT}")
