"""Verifiable arithmetic reasoning tasks for a small character-level language model.

Countdown-style task
--------------------
A prompt lists ``k`` small numbers and a target, ``"4,7,2=22:"``; the model must answer with an
arithmetic expression over ``+ - * /`` and parentheses that uses each listed number at most once
(as many times as it is listed) and evaluates to the target, e.g. ``"(4+7)*2"``, followed by the
end token. The verifier parses the answer itself (a recursive-descent parser over its own tokens)
and evaluates it with exact rationals (:class:`fractions.Fraction`); nothing is ever ``eval``-ed.
Intermediate results may be fractions (``8/(3-1)`` style answers are fine).

Problems are generated from a seed: ``k`` numbers drawn uniformly from ``[1, max_number]`` and a
target obtained by combining them left to right with random operators (so every problem has a
solution). Train / validation / test splits are disjoint by construction: a problem's split is a
fixed function of its prompt text (a hash), so no prompt can land in two splits.

Addition task
-------------
``"123+456="`` -> ``"579"``: a simpler verifiable task for quick checks.

Imperfect solvers
-----------------
:func:`imperfect_countdown_solver` writes a correct solution with probability ``p_correct`` and
otherwise corrupts one operator of it, so a model pre-trained on its output starts at a moderate
accuracy and has room to improve.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

import numpy as np

# ---------------------------------------------------------------------------
# Character tokenizer
# ---------------------------------------------------------------------------

PAD, EOS = 0, 1
CHARS = "0123456789+-*/(),=:"
VOCAB = ("<pad>", "$") + tuple(CHARS)
VOCAB_SIZE = len(VOCAB)
_CHAR_TO_ID = {c: i + 2 for i, c in enumerate(CHARS)}
_CHAR_TO_ID["$"] = EOS


def encode(text: str) -> list[int]:
    """Characters -> token ids (``$`` is the end token)."""
    try:
        return [_CHAR_TO_ID[c] for c in text]
    except KeyError as e:
        raise ValueError(f"text may only contain characters {CHARS!r} and '$', got {e.args[0]!r}") from None


def decode(ids: Iterable[int], stop_at_eos: bool = True) -> str:
    """Token ids -> text; stops at the first end token (not included) and skips padding."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS and stop_at_eos:
            break
        if i == PAD:
            continue
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token ids must be in [0, {VOCAB_SIZE}), got {i}")
        out.append("$" if i == EOS else VOCAB[i])
    return "".join(out)


# ---------------------------------------------------------------------------
# Exact, safe verifier
# ---------------------------------------------------------------------------

STATUSES = ("correct", "wrong_value", "reused_number", "unknown_number", "div_by_zero", "malformed")


class Verdict(NamedTuple):
    """Outcome of checking one answer. ``value`` is the exact value when the expression parses."""

    status: str
    value: Fraction | None = None


class _Malformed(Exception):
    pass


class _DivByZero(Exception):
    pass


def tokenize_expression(text: str) -> list[str]:
    """Split an expression into number and operator tokens; raises ValueError on other characters.

    Numbers with a leading zero (``"07"``) are rejected.
    """
    toks, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            num = text[i:j]
            if len(num) > 1 and num[0] == "0":
                raise ValueError(f"numbers must not have leading zeros, got {num!r}")
            toks.append(num)
            i = j
        elif c in "+-*/()":
            toks.append(c)
            i += 1
        else:
            raise ValueError(f"expression may only contain digits and + - * / ( ), got {c!r}")
    return toks


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """Exact value and the list of numbers used, of ``expr := term (+|- term)*``,
    ``term := factor (*|/ factor)*``, ``factor := number | ( expr )``.

    Raises ValueError (malformed) or ZeroDivisionError.
    """
    toks = tokenize_expression(text)
    pos = 0
    used: list[int] = []

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        t = peek()
        pos += 1
        return t

    def factor() -> Fraction:
        t = take()
        if t is None:
            raise _Malformed
        if t == "(":
            v = expr()
            if take() != ")":
                raise _Malformed
            return v
        if t.isdigit():
            used.append(int(t))
            return Fraction(int(t))
        raise _Malformed

    def term() -> Fraction:
        v = factor()
        while peek() in ("*", "/"):
            op = take()
            w = factor()
            if op == "*":
                v = v * w
            else:
                if w == 0:
                    raise _DivByZero
                v = v / w
        return v

    def expr() -> Fraction:
        v = term()
        while peek() in ("+", "-"):
            op = take()
            w = term()
            v = v + w if op == "+" else v - w
        return v

    try:
        value = expr()
        if pos != len(toks):
            raise _Malformed
    except _Malformed:
        raise ValueError(f"malformed expression {text!r}") from None
    except _DivByZero:
        raise ZeroDivisionError(f"division by zero in {text!r}") from None
    return value, used


def verify_countdown(numbers: Sequence[int], target: int, answer: str) -> Verdict:
    """Check an answer: a well-formed expression using each listed number at most as often as
    it is listed, evaluating exactly to ``target``. Division by zero anywhere is an error."""
    return _verify(tuple(int(n) for n in numbers), int(target), str(answer))


# Members of a population often produce the same answer to the same prompt (greedy decoding
# most of all): parsing each once saves a large part of a fine-tuning run's Python time.
@lru_cache(maxsize=1 << 18)
def _verify(numbers: tuple[int, ...], target: int, answer: str) -> Verdict:
    try:
        value, used = parse_expression(answer)
    except ZeroDivisionError:
        return Verdict("div_by_zero")
    except (ValueError, RecursionError):
        return Verdict("malformed")
    available: dict[int, int] = {}
    for n in numbers:
        available[int(n)] = available.get(int(n), 0) + 1
    counts: dict[int, int] = {}
    for u in used:
        counts[u] = counts.get(u, 0) + 1
    for u, c in counts.items():
        if u not in available:
            return Verdict("unknown_number", value)
    for u, c in counts.items():
        if c > available[u]:
            return Verdict("reused_number", value)
    return Verdict("correct" if value == target else "wrong_value", value)


def countdown_reward(numbers: Sequence[int], target: int, answer: str, partial_credit: float = 0.0) -> float:
    """1 for a correct answer; ``partial_credit`` for a legal expression with the wrong value; else 0."""
    if not 0.0 <= partial_credit < 1.0:
        raise ValueError(f"partial_credit must be in [0, 1), got {partial_credit}")
    status = verify_countdown(numbers, target, answer).status
    if status == "correct":
        return 1.0
    return partial_credit if status == "wrong_value" else 0.0


# ---------------------------------------------------------------------------
# Problems and splits
# ---------------------------------------------------------------------------

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """How many numbers a problem lists (2..5) and how large they are (max_number in 2..99)."""

    num_numbers: int = 3
    max_number: int = 9

    def __post_init__(self) -> None:
        if not (isinstance(self.num_numbers, int) and 2 <= self.num_numbers <= 5):
            raise ValueError(f"num_numbers must be an integer in [2, 5], got {self.num_numbers!r}")
        if not (isinstance(self.max_number, int) and 2 <= self.max_number <= 99):
            raise ValueError(f"max_number must be an integer in [2, 99], got {self.max_number!r}")

    @property
    def max_prompt_len(self) -> int:
        d = len(str(self.max_number))
        k = self.num_numbers
        target_digits = len(str(self.max_number**k))
        return k * d + (k - 1) + 1 + target_digits + 1

    @property
    def max_answer_len(self) -> int:
        """Longest answer the solver writes (left-to-right chain with parentheses), plus the end token."""
        d = len(str(self.max_number))
        k = self.num_numbers
        return k * d + (k - 1) + 2 * (k - 2) + 1


class Problem(NamedTuple):
    numbers: tuple[int, ...]
    target: int

    @property
    def prompt(self) -> str:
        return ",".join(map(str, self.numbers)) + f"={self.target}:"


def split_of(prompt: str) -> str:
    """The split a prompt belongs to: a fixed hash of its text (80% train, 10% val, 10% test)."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "little") % 10
    return "train" if h < 8 else ("val" if h == 8 else "test")


OPS = ("+", "-", "*")


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def chain_expression(numbers: Sequence[int], ops: Sequence[str]) -> str:
    """Text of ``((n0 op0 n1) op1 n2) ...`` evaluated left to right, with only the parentheses
    standard precedence needs."""
    if len(ops) != len(numbers) - 1:
        raise ValueError(f"ops must have len(numbers) - 1 = {len(numbers) - 1} entries, got {len(ops)}")
    text, last = str(numbers[0]), None
    for op, n in zip(ops, numbers[1:]):
        if op in ("*", "/") and last in ("+", "-"):
            text = f"({text})"
        text = f"{text}{op}{n}"
        last = op
    return text


def chain_value(numbers: Sequence[int], ops: Sequence[str]) -> Fraction:
    v = Fraction(numbers[0])
    for op, n in zip(ops, numbers[1:]):
        v = _apply(v, op, Fraction(n))
    return v


def make_problems(split: str, n: int, seed: int = 0, difficulty: Difficulty = Difficulty()) -> list[Problem]:
    """``n`` distinct problems of ``split`` ("train", "val" or "test"), deterministic in ``seed``.

    Each problem's target comes from a random left-to-right chain over its numbers with
    operators in ``+ - *``; only positive targets are kept.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return list(_make_problems(split, n, seed, difficulty))  # a fresh list: callers may change theirs


# Every run of the fine-tuning experiments asks for the same problem sets again.
@lru_cache(maxsize=64)
def _make_problems(split: str, n: int, seed: int, difficulty: Difficulty) -> tuple[Problem, ...]:
    rng = np.random.default_rng([seed, SPLITS.index(split), difficulty.num_numbers, difficulty.max_number])
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"could not generate {n} distinct {split} problems at {difficulty}; ask for fewer")
        nums = tuple(int(x) for x in rng.integers(1, difficulty.max_number + 1, difficulty.num_numbers))
        ops = [OPS[i] for i in rng.integers(0, len(OPS), difficulty.num_numbers - 1)]
        target = chain_value(nums, ops)
        if target <= 0:
            continue
        p = Problem(nums, int(target))
        if p.prompt in seen or split_of(p.prompt) != split:
            continue
        seen.add(p.prompt)
        out.append(p)
    return tuple(out)


# ---------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------


@lru_cache(maxsize=100_000)
def _chain_solutions(numbers: tuple[int, ...], target: int) -> tuple[tuple[str, ...], ...]:
    return tuple(
        ops for ops in itertools.product(OPS, repeat=len(numbers) - 1) if chain_value(numbers, ops) == target
    )


def solve_countdown(problem: Problem) -> str | None:
    """An exact solver: the first left-to-right chain (numbers in the listed order, then every
    permutation, operators in ``+ - * /``) that hits the target; None if there is none."""
    for perm in itertools.permutations(problem.numbers):
        for ops in itertools.product(OPS + ("/",), repeat=len(perm) - 1):
            try:
                if chain_value(perm, ops) == problem.target:
                    return chain_expression(perm, ops)
            except ZeroDivisionError:
                continue
    return None


def imperfect_countdown_solver(problem: Problem, rng: np.random.Generator, p_correct: float = 0.35) -> str:
    """A deliberately imperfect solver: the listed-order chain that hits the target with
    probability ``p_correct``; otherwise the same chain with one operator replaced at random
    (almost always wrong). Used to write the pre-training data."""
    if not 0.0 <= p_correct <= 1.0:
        raise ValueError(f"p_correct must be in [0, 1], got {p_correct}")
    sols = _chain_solutions(problem.numbers, problem.target)
    if not sols:
        raise ValueError(f"problem {problem.prompt!r} has no listed-order solution")
    ops = list(sols[int(rng.integers(len(sols)))])
    if rng.random() >= p_correct:
        j = int(rng.integers(len(ops)))
        ops[j] = [o for o in OPS if o != ops[j]][int(rng.integers(len(OPS) - 1))]
    return chain_expression(problem.numbers, ops)


# ---------------------------------------------------------------------------
# Addition task
# ---------------------------------------------------------------------------


class AdditionProblem(NamedTuple):
    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="


def make_addition_problems(split: str, n: int, seed: int = 0, digits: int = 3) -> list[AdditionProblem]:
    """``n`` distinct ``digits``-digit addition problems of ``split``; splits disjoint by hash."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not (isinstance(digits, int) and 1 <= digits <= 6):
        raise ValueError(f"digits must be an integer in [1, 6], got {digits!r}")
    if not (isinstance(n, int) and 1 <= n <= (10**digits) ** 2 // 20):
        raise ValueError(f"n must be an integer in [1, {(10 ** digits) ** 2 // 20}], got {n!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), digits, 7])
    out, seen = [], set()
    while len(out) < n:
        a, b = (int(x) for x in rng.integers(0, 10**digits, 2))
        p = AdditionProblem(a, b)
        if p.prompt in seen or split_of(p.prompt) != split:
            continue
        seen.add(p.prompt)
        out.append(p)
    return out


def verify_addition(problem: AdditionProblem, answer: str) -> bool:
    """True when ``answer`` is exactly the decimal sum (no sign, no leading zeros)."""
    return answer.isdigit() and (answer == "0" or answer[0] != "0") and int(answer) == problem.a + problem.b


def imperfect_addition_solver(problem: AdditionProblem, rng: np.random.Generator, p_drop_carry: float = 0.3) -> str:
    """Column addition that forgets each carry with probability ``p_drop_carry``."""
    if not 0.0 <= p_drop_carry <= 1.0:
        raise ValueError(f"p_drop_carry must be in [0, 1], got {p_drop_carry}")
    a, b = str(problem.a)[::-1], str(problem.b)[::-1]
    digits, carry = [], 0
    for i in range(max(len(a), len(b))):
        s = int(a[i]) if i < len(a) else 0
        s += int(b[i]) if i < len(b) else 0
        s += carry
        digits.append(s % 10)
        carry = s // 10 if rng.random() >= p_drop_carry else 0
    if carry:
        digits.append(carry)
    return str(int("".join(map(str, digits[::-1]))))
