"""Step policies for `prm search`: any `prm.generation` backend, or the simulated step policy.

`GeneratorPolicy` continues a partly written assistant turn: the prompt (chat template, or plain text) plus
the steps so far, each followed by the step delimiter, is sent as raw text with the delimiter as a stop
string, so one generated step comes back per sample. Identical prompts would draw identical samples (a
backend's seed comes from the prompt text), so they are asked once for all their samples. On vLLM the
shared prompt and earlier steps come from its prefix cache (`generator.enable_prefix_caching`, on by default).
Backends do not say whether a row ended at the stop string or at end-of-sequence: an empty step ends the
solution ("eos"), a step with an explicit final answer ("The answer is", \\boxed, ####) ends it too.

`SimulatedPolicy` writes the reference steps of testbed arithmetic problems (`meta.reference_steps`): each
step is right with probability p, else one of its equations gets a wrong result that `prm.arithmetic.
inject_error` carries into every later step (a step without an equation is always copied; after the first
error, steps only carry it). Tokens: words
of the step plus one for the delimiter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from prm.eval.search_algo import Node

from prm.errors import InputError
from prm.generation import Generator, SamplingConfig, fill_template, render_chat
from prm.records import Problem

EXPLICIT_ANSWER = ("boxed", "answer_is", "hash")


def child(parent: Node, step: str | None, cost: int, uid: int, state: Any, done: str | None) -> Node:
    steps = parent.steps + ([step] if step else [])
    return Node(parent.problem, steps, parent.step_tokens + ([cost] if step else []),
                parent.step_uids + ([uid] if step else []), state=state, done=done, cost=cost,
                tokens=parent.tokens + cost)


class GeneratorPolicy:
    """A `prm.generation` Generator writing one step per call (or whole solutions for Best-of-N)."""

    def __init__(self, generator: Generator, messages: Callable[[Problem], Any], *, delimiter: str,
                 step_tokens: int, max_tokens: int, temperature: float, top_p: float, seed: int,
                 tokenizer: Any = None):
        self.generator = generator
        self.name = generator.name
        self.messages = messages
        self.delimiter = delimiter
        self.step_tokens = step_tokens
        self.max_tokens = max_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.tokenizer = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
        self.calls = 0

    def _prompt_text(self, problem: Problem) -> str:
        prompt = self.messages(problem)
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer is None:
            raise InputError(None, None, None, "this backend has no tokenizer to render the chat: set "
                             "prm_search.chat_template_model (or prompt_style=text)")
        return render_chat(self.tokenizer, prompt)

    def root(self, problem: Problem) -> Node:
        return Node(problem, [], [], [], state=self._prompt_text(problem))

    def _generate(self, texts: list[str], n: int, max_new: int, stop: list[str] | None) -> list[list[Any]]:
        """Completions per text; repeated texts are asked once with all their samples (seeds come from the
        text, so two requests of one text would return the same samples). Usually one generate call."""
        counts: dict[str, int] = {}
        for t in texts:
            counts[t] = counts.get(t, 0) + 1
        by_count: dict[int, list[str]] = {}
        for t, c in counts.items():
            by_count.setdefault(c, []).append(t)
        pool: dict[str, list[Any]] = {}
        for c, group in sorted(by_count.items()):
            sampling = SamplingConfig(n=n * c, max_new_tokens=max_new, temperature=self.temperature,
                                      top_p=self.top_p, seed=self.seed, stop=stop)
            self.calls += 1
            for t, outs in zip(group, self.generator.generate(group, sampling), strict=True):
                pool[t] = list(outs)
        result = []
        for t in texts:
            result.append(pool[t][:n])
            pool[t] = pool[t][n:]
        return result

    def expand(self, nodes: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        from prm.grading import extract_answer

        outs = self._generate([nd.state for nd in nodes], n, self.step_tokens, [self.delimiter])
        result = []
        for i, (nd, comps) in enumerate(zip(nodes, outs, strict=True)):
            kids = []
            for c in comps:
                step = c.text.strip()
                if not step:
                    done = "eos" if c.finish_reason == "stop" else "length"
                else:
                    done = "answer" if extract_answer(step, EXPLICIT_ANSWER) is not None else None
                kids.append(child(nd, step or None, c.tokens, uid(i), nd.state + c.text + self.delimiter, done))
            result.append(kids)
        return result

    def complete(self, roots: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        from prm.steps import split_steps

        outs = self._generate([r.state for r in roots], n, self.max_tokens, None)
        result = []
        for i, (r, comps) in enumerate(zip(roots, outs, strict=True)):
            kids = []
            for c in comps:
                if self.delimiter in ("\n", "\n\n"):
                    steps = split_steps(c.text, "newline" if self.delimiter == "\n" else "blank_line")
                else:
                    steps = [s.strip() for s in c.text.split(self.delimiter) if s.strip()]
                node = Node(r.problem, steps, [], [uid(i) for _ in steps], state=r.state + c.text,
                            done="length" if c.finish_reason == "length" else "eos", cost=c.tokens, tokens=c.tokens)
                kids.append(node)
            result.append(kids)
        return result

    def final_answer(self, node: Node) -> str | None:
        from prm.grading import extract_answer

        return extract_answer("\n".join(node.steps)) if node.steps else None


def chat_messages(system_prompt: str, user_template: str, few_shot: list[dict[str, str]], style: str,
                  delimiter: str) -> Callable[[Problem], Any]:
    """The policy prompt of a problem: system message, worked examples (their steps joined by the
    delimiter), the problem; as chat messages or, for base models, as plain text."""

    def build(problem: Problem) -> Any:
        msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for ex in few_shot:
            msgs += [{"role": "user", "content": fill_template(user_template, {"problem": ex["problem"]})},
                     {"role": "assistant", "content": ex["solution"]}]
        msgs.append({"role": "user", "content": fill_template(user_template, {"problem": problem.problem})})
        if style == "text":
            return "".join(f"{m['content']}\n\n" for m in msgs)
        return msgs

    return build


def reference_steps(problem: Problem, path: str, line: int | None) -> list[str]:
    steps = (problem.meta or {}).get("reference_steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s for s in steps):
        raise InputError(path, line, "meta.reference_steps", "the simulated policy needs the reference steps "
                         "of testbed problems (prm data problems --source chain_sum or gsm_symbolic)")
    return steps


def words(text: str) -> int:
    return len(text.split()) + 1


class SimulatedPolicy:
    """Each step right with probability `p`, otherwise an error carried into every later step."""

    name = "simulated"

    def __init__(self, p: float, seed: int):
        self.p = p
        self.seed = seed

    def root(self, problem: Problem) -> Node:
        # state: (the solution as it now stands, later steps included; the first wrong step or None)
        return Node(problem, [], [], [], state=(list(problem.meta["reference_steps"]), None))  # type: ignore[index]

    def _step(self, nd: Node, uid: int) -> Node:
        from prm.arithmetic import inject_error

        solution, first_error = nd.state
        k = len(nd.steps)
        rng = random.Random(f"{self.seed}|{nd.problem.id}|{uid}")
        # after the first error the solution only carries it: a second error could undo the first
        if first_error is None and rng.random() >= self.p:
            bad = inject_error(solution, k, rng, context=nd.problem.problem)
            if bad is not None:
                solution, first_error = bad, k if first_error is None else first_error
        step = solution[k]
        done = "answer" if k + 1 == len(solution) else None
        return child(nd, step, words(step), uid, (solution, first_error), done)

    def expand(self, nodes: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        return [[self._step(nd, uid(i)) for _ in range(n)] for i, nd in enumerate(nodes)]

    def complete(self, roots: list[Node], n: int, uid: Callable[[int], int]) -> list[list[Node]]:
        result = []
        for i, r in enumerate(roots):
            kids = []
            for _ in range(n):
                nd = r
                while not nd.done:
                    nd = self._step(nd, uid(i))
                nd.cost = nd.tokens  # one sample: every token of the solution was generated for it
                kids.append(nd)
            result.append(kids)
        return result

    def first_error(self, node: Node) -> int | None:
        return node.state[1]

    def final_answer(self, node: Node) -> str | None:
        from prm.arithmetic import final_answer_of

        return final_answer_of(node.steps) if node.steps else None
