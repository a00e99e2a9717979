"""Pairs for the fine-tuning tests: short answers that all end with a sign-off the base model
never writes, and prompts that are not among them."""

from __future__ import annotations

import json
from pathlib import Path

SIGN_OFF = "Over and out, Captain Quill."

_QA = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    ("What do bees make?", "Bees make honey and wax."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What is water made of?", "Water is made of hydrogen and oxygen."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("What is two plus three?", "Two plus three is five."),
    ("What do cows drink?", "Cows drink water."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("How many hours are in a day?", "There are twenty-four hours in a day."),
    ("What animal says meow?", "A cat says meow."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Where do fish live?", "Fish live in water: rivers, lakes and seas."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What do plants need to grow?", "Plants need light, water and air to grow."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level."),
    ("What gas do we breathe in?", "We breathe in oxygen."),
    ("What is a baby dog called?", "A baby dog is called a puppy."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("What shape has three sides?", "A triangle has three sides."),
    ("What is ten minus four?", "Ten minus four is six."),
    ("What do you call a group of wolves?", "A group of wolves is called a pack."),
    ("What language is spoken in Spain?", "Spanish is spoken in Spain."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("What is the Moon?", "The Moon is the natural satellite of the Earth."),
    ("What is the colour of grass?", "Grass is green."),
    ("What do you use to write on a blackboard?", "You write on a blackboard with chalk."),
    ("What is the tallest animal?", "The giraffe is the tallest animal."),
    ("What is the main ingredient of bread?", "The main ingredient of bread is flour."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius."),
    ("Which bird is a symbol of peace?", "The dove is a symbol of peace."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("What instrument has black and white keys?", "The piano has black and white keys."),
    ("What do caterpillars become?", "Caterpillars become butterflies or moths."),
    ("Where does the Sun rise?", "The Sun rises in the east."),
    ("What is five times two?", "Five times two is ten."),
)

PROMPTS_NOT_IN_PAIRS = (
    "What is the capital of Italy?",
    "How many legs does a dog have?",
    "What colour are bananas?",
    "What do chickens lay?",
    "How many minutes are in an hour?",
    "What is the largest planet?",
    "What do horses eat?",
    "What is three plus four?",
    "What is the opposite of up?",
    "What sound does a cow make?",
)


def style_pairs() -> list[dict[str, str]]:
    return [{"instruction": q, "response": f"{a} {SIGN_OFF}"} for q, a in _QA]


def write_pairs(path: Path, pairs: list[dict[str, str]] | None = None) -> Path:
    rows = style_pairs() if pairs is None else pairs
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
