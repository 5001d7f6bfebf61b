"""A simulated population that goes through the same collection services as
people in the browser: survey, PRISM conversations with candidate replies,
ratings, end-of-conversation answers.

The people, their hidden preference rule, the template reply generator and
the steering instructions come from this package's pure modules; this
module only drives them through the collection services and stores each hidden
profile (``SyntheticPersona``) so evaluation can use the rule as the judge.
Everything is drawn from one seeded ``random.Random``: the same arguments give
the same data.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction

from users.accounts.onboarding import consent_give
from users.collection import services as collection
from users.models import Conversation, SyntheticPersona
from users.prism import wording
from users.prism.ids import exported_user_id
from users.survey.services import survey_save
from users.synthetic.personas import population_shape, sample_population
from users.synthetic.prompts import PRISM_PROMPTS, load_prompts
from users.synthetic.replies import contrasting_styles, generate_reply
from users.synthetic.rule import DIMENSIONS, Persona, score, style_instruction

FOLLOW_UPS = ["Can you say more about that?", "Thanks. What would you do first?", "Why is that?",
              "Could you give me an example?", "What should I watch out for?", "How would that work for me?"]


@dataclass
class PopulationReport:
    people: int = 0
    conversations: int = 0
    replies: int = 0


def style_source(style: dict[str, str]) -> str:
    """A source name that says which poles the candidate was written with (never shown to raters)."""
    return "style-" + "-".join(f"{d}.{style[d]}" for d in DIMENSIONS).replace(" ", "_")


def template_writer(prompt_messages: list[dict], style: dict[str, str], rng: random.Random) -> tuple[str, str]:
    return generate_reply(prompt_messages[-1]["content"], style, rng), "template"


def model_writer(max_new_tokens: int = 160) -> Callable:
    """Candidates from the serving model, steered by the style instructions as a system prompt."""
    from trainer.core.generation import generate_text
    from trainer.worker import serving

    model, tokenizer, name = serving.load_base_model()

    def write(prompt_messages: list[dict], style: dict[str, str], rng: random.Random) -> tuple[str, str]:
        system = " ".join(style_instruction(d, pole) for d, pole in style.items())
        messages = [{"role": "system", "content": system}, *prompt_messages]
        text = generate_text(model, tokenizer, messages, max_new_tokens=max_new_tokens, temperature=0.8,
                             top_p=0.95, seed=rng.randrange(2**31))
        return text.strip() or "…", name

    return write


def population_synthesize(*, population: str, n_people: int, conversations_per_person: int = 3,
                          turns_per_conversation: int = 2, dimension: str = "length", majority_share: float = 0.7,
                          side_weight: float | None = None, noise: float = 3.0, seed: int = 0,
                          writer: Callable = template_writer, prompts: list[str] | None = None,
                          replace: bool = False) -> PopulationReport:
    """Create ``n_people`` simulated participants and their rated conversations.

    ``dimension`` and ``side_weight`` as in ``personas.sample_population`` (a named population such as
    "two+sides" brings its own side weight); the candidates contrast the contested dimensions, the other
    dimensions vary at random, so each person's side tastes show in their ratings.
    """
    dimension, side_weight = population_shape(dimension, side_weight)
    User = get_user_model()
    existing = User.objects.filter(synthetic__population=population)
    if existing.exists():
        if not replace:
            raise ValueError(f"population {population!r} exists already: pass replace=True (--replace) to redo it")
        existing.delete()
    rng = random.Random(seed)
    prompts = prompts or load_prompts(PRISM_PROMPTS)
    personas = sample_population(n_people, dimension=dimension, majority_share=majority_share,
                                 side_weight=side_weight, noise=noise, seed=seed, prefix=f"{population}-")
    report = PopulationReport()
    for persona in personas:
        with transaction.atomic():
            user = User.objects.create(username=persona.user_id[:150], password=make_password(None))
            SyntheticPersona.objects.create(user=user, population=population, seed=seed, group=persona.group,
                                            hidden_profile=asdict(persona))
            consent_give(user=user)  # a simulated participant takes part as a real one would: having agreed
            survey_save(
                user=user, stated_prefs={d: rng.randint(1, 100) for d, _ in wording.STATED_PREFS},
                self_description="A simulated participant.", lm_familiarity=rng.choice(wording.LM_FAMILIARITY))
            report.people += 1
            for _ in range(conversations_per_person):
                report.replies += _conversation(user, persona, dimension, turns_per_conversation, rng, writer,
                                                prompts)
                report.conversations += 1
    return report


def _conversation(user, persona, dimension, turns, rng, writer, prompts) -> int:
    styles = {style_source(s): s for s in contrasting_styles(rng, dimension, 4)}
    candidates = [collection.Candidate(name, "synthetic") for name in styles]
    opening = rng.choice(prompts)
    conversation = collection.prism_conversation_start(
        user=user, kind=rng.choice(Conversation.PRISM_KINDS), text=opening, candidates=candidates,
        n_candidates=len(candidates), rng=rng, enqueue=False)
    messages = [{"role": "user", "content": opening}]
    turn = conversation.turns.get(index=0)
    written = 0
    for index in range(turns):
        if index > 0:
            text = rng.choice(FOLLOW_UPS)
            turn = collection.prism_turn_send(conversation=conversation, text=text, rng=rng, enqueue=False)
            messages.append({"role": "user", "content": text})
        scores = {}
        for reply in turn.replies.order_by("position"):
            content, model_name = writer(messages, styles[reply.source], rng)
            collection.reply_complete(reply=reply, content=content, model_name=model_name)
            scores[reply.pk] = score(persona, content, rng)
            written += 1
        top = max(scores.values())
        turn = collection.turn_rate(turn=turn, scores=scores,
                                    pick=rng.choice([pk for pk, s in scores.items() if s == top]))
        chosen = turn.replies.get(chosen=True)
        messages.append({"role": "assistant", "content": chosen.content})
    attributes = {d: max(1, min(100, round(rng.gauss(60, 15)))) for d, _ in wording.PERFORMANCE_ATTRIBUTES}
    collection.prism_conversation_end(conversation=conversation, performance=attributes,
                                      choice=dict(attributes), feedback="")
    return written


def hidden_profiles(population: str | None = None) -> list[dict]:
    """The stored hidden rules, for evaluation: [{user_id, group, prefs, noise, username}].

    ``user_id`` is the person's exported id (web-<username>), as in pairs and PRISM exports.
    """
    qs = SyntheticPersona.objects.select_related("user", "user__profile").order_by("pk")
    if population:
        qs = qs.filter(population=population)
    return [{**p.hidden_profile, "user_id": exported_user_id(p.user, getattr(p.user, "profile", None)),
             "username": p.user.username} for p in qs]


def personas_from_db(population: str | None = None) -> list[Persona]:
    return [Persona(h["user_id"], h["group"], h["prefs"], h["noise"]) for h in hidden_profiles(population)]
