"""Full-size PRISM-format files for the import benchmark and tests.

The counts are exact: ``people`` surveys, ``conversations`` conversations and
``replies`` rated replies (one utterance each). PRISM's protocol is followed —
4 replies in an opening turn, 2 in each later turn from the chosen model — with
one 3-reply opening turn when the parity needs it (the real dataset has such
turns too). Text is made from a small vocabulary, seeded, written line by line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

PRISM_SIZE = {"people": 1500, "conversations": 8011, "replies": 68371}
WORDS = ("the model answer question people value time life work family help think good idea because world "
         "health money friend learn change history science story reason truth culture care fair risk safe "
         "kind simple clear detail example plan choice future community music food travel rights").split()
MODELS = [("claude-2", "anthropic"), ("gpt-4", "openai"), ("llama-2-70b-chat", "meta"),
          ("command", "cohere"), ("zephyr-7b-beta", "huggingface"), ("palm-2", "google")]
TYPES = ["unguided", "values guided", "controversy guided"]
COUNTRIES = [("United Kingdom", "GBR", "Europe", "Northern Europe"), ("United States", "USA", "Americas",
             "Northern America"), ("Mexico", "MEX", "Americas", "Latin America and the Caribbean"),
             ("India", "IND", "Asia", "Southern Asia"), ("Kenya", "KEN", "Africa", "Sub-Saharan Africa")]
DIMS = ["values", "creativity", "fluency", "factuality", "diversity", "safety", "personalisation", "helpfulness"]


def _text(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _turn_plan(rng: random.Random, conversations: int, replies: int) -> list[list[int]]:
    """Replies per turn for every conversation, summing exactly to ``replies``."""
    later, odd = divmod(replies - 4 * conversations, 2)
    if odd:
        later += 1  # one opening turn gets 3 replies instead of 4
    if later < 0:
        raise ValueError(f"{replies} replies are too few for {conversations} conversations (4 in each opening turn)")
    plans = [[4] for _ in range(conversations)]
    if odd:
        plans[0][0] = 3
    for _ in range(later):
        plans[rng.randrange(conversations)].append(2)
    return plans


def _survey(rng: random.Random, uid: str, done: int) -> dict:
    birth, reside = rng.choice(COUNTRIES), rng.choice(COUNTRIES)
    return {
        "user_id": uid, "survey_only": done == 0, "num_completed_conversations": done,
        "consent": "Yes, I consent to participate", "consent_age": "Yes, I am 18 years or older",
        "lm_familiarity": rng.choice(["Very familiar", "Somewhat familiar", "Not familiar at all"]),
        "lm_indirect_use": "Yes", "lm_direct_use": "Yes", "lm_frequency_use": rng.choice(["Every day", "Every week"]),
        "self_description": _text(rng, 30), "system_string": _text(rng, 25),
        "age": rng.choice(["18-24 years old", "25-34 years old", "45-54 years old"]),
        "gender": rng.choice(["Male", "Female", "Non-binary / third gender"]),
        "employment_status": "Working full-time", "education": "University Bachelors Degree",
        "marital_status": "Never been married", "english_proficiency": "Native speaker",
        "study_id": "fake-study", "study_locale": reside[0].lower(),
        "religion": {"self_described": "none", "categorised": "No Affiliation", "simplified": "No religion"},
        "ethnicity": {"self_described": "mixed", "categorised": "Mixed", "simplified": "Mixed"},
        "location": {"birth_country": birth[0], "birth_countryISO": birth[1], "birth_region": birth[2],
                     "birth_subregion": birth[3], "reside_country": reside[0], "reside_countryISO": reside[1],
                     "reside_region": reside[2], "reside_subregion": reside[3],
                     "same_birth_reside_country": birth == reside},
        "lm_usecases": {k: rng.random() < 0.5 for k in ("research", "professional_work", "creative_writing")},
        "stated_prefs": {d: rng.randint(1, 100) for d in DIMS} | {"other": None, "other_text": None},
        "order_lm_usecases": {"research": 1, "professional_work": 2, "creative_writing": 3},
        "order_stated_prefs": {d: i + 1 for i, d in enumerate(DIMS)},
        "generated_datetime": "2023-11-22 14:%02d:%02d" % (rng.randrange(60), rng.randrange(60)),
        "timing_duration_s": rng.randint(200, 2000), "timing_duration_mins": None,
        "included_in_US_REP": False, "included_in_UK_REP": rng.random() < 0.3, "included_in_balanced_subset": False,
    }


Replies = Callable[[int, str, int, random.Random], list[tuple[str, "int | None"]]]  # (turn, prompt, n) -> (text, score)


def random_replies(turn: int, prompt: str, n: int, rng: random.Random) -> list[tuple[str, int | None]]:
    """Random text rated at random: the size and shape of PRISM without any preference in it."""
    return [(_text(rng, rng.randint(20, 60)), rng.randint(1, 100)) for _ in range(n)]


def _conversation(rng: random.Random, cid: str, uid: str, plan: list[int], null_scores: float, ties: float,
                  replies: Replies = random_replies, opening: str | None = None,
                  follow_up: Callable[[random.Random], str] | None = None) -> tuple[dict, list[dict]]:
    kind = rng.choice(TYPES)
    history, utterances = [], []
    opening = opening or _text(rng, rng.randint(6, 25))
    chosen_model = None
    for turn, n in enumerate(plan):
        prompt = opening if turn == 0 else (follow_up(rng) if follow_up else _text(rng, rng.randint(4, 20)))
        history.append({"turn": turn, "role": "user", "content": prompt, "model_provider": None,
                        "model_name": None, "score": None, "if_chosen": None, "within_turn_id": None})
        models = rng.sample(MODELS, n) if turn == 0 else [chosen_model] * n
        written = replies(turn, prompt, n, rng)
        scores = [score for _, score in written]
        if rng.random() < ties:
            scores[1] = max(scores)
        if turn > 0 and rng.random() < null_scores:
            scores = [None] * n
        ranked = [s if s is not None else -1 for s in scores]
        best = ranked.index(max(ranked))
        chosen_model = models[best]
        for w, ((name, provider), (reply, _), score) in enumerate(zip(models, written, scores)):
            history.append({"turn": turn, "role": "model", "content": reply, "model_provider": provider,
                            "model_name": name, "score": score, "if_chosen": w == best, "within_turn_id": w})
            utterances.append({
                "utterance_id": f"{cid}-u{turn}-{w}", "interaction_id": f"{cid}-i{turn}", "conversation_id": cid,
                "user_id": uid, "turn": turn, "within_turn_id": w, "user_prompt": prompt,
                "model_response": reply, "model_name": name, "model_provider": provider, "score": score,
                "if_chosen": w == best, "conversation_type": kind, "included_in_balanced_subset": False,
            })
    record = {
        "conversation_id": cid, "user_id": uid, "generated_datetime": "2023-11-23 09:00:00",
        "timing_duration_s": rng.randint(60, 900), "timing_duration_mins": None, "conversation_type": kind,
        "opening_prompt": opening, "conversation_turns": len(plan), "conversation_history": history,
        "performance_attributes": {d: rng.randint(1, 100) for d in DIMS if d != "personalisation"},
        "choice_attributes": {d: rng.randint(1, 100) for d in DIMS if d != "personalisation"},
        "open_feedback": _text(rng, 12) if rng.random() < 0.8 else None, "included_in_balanced_subset": False,
    }
    return record, utterances


def prism_files_make(*, folder: Path, people: int = PRISM_SIZE["people"],
                     conversations: int = PRISM_SIZE["conversations"], replies: int = PRISM_SIZE["replies"],
                     seed: int = 0, null_scores: float = 0.01, ties: float = 0.05) -> dict[str, Path]:
    """Write survey.jsonl, conversations.jsonl and utterances.jsonl into ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    plans = _turn_plan(rng, conversations, replies)
    active = max(1, round(people * 0.93))  # PRISM: some people only did the survey
    owners = [f"user{rng.randrange(active)}" if i >= active else f"user{i}" for i in range(conversations)]
    done: dict[str, int] = {}
    for uid in owners:
        done[uid] = done.get(uid, 0) + 1
    paths = {name: folder / f"{name}.jsonl" for name in ("survey", "conversations", "utterances")}
    with open(paths["survey"], "w", encoding="utf-8") as out:
        for i in range(people):
            uid = f"user{i}"
            out.write(json.dumps(_survey(rng, uid, done.get(uid, 0)), ensure_ascii=False) + "\n")
    with open(paths["conversations"], "w", encoding="utf-8") as conv_out, \
            open(paths["utterances"], "w", encoding="utf-8") as utt_out:
        for i, (uid, plan) in enumerate(zip(owners, plans)):
            record, utterances = _conversation(rng, f"c{i}", uid, plan, null_scores, ties)
            conv_out.write(json.dumps(record, ensure_ascii=False) + "\n")
            for u in utterances:
                utt_out.write(json.dumps(u, ensure_ascii=False) + "\n")
    return paths


def rated_prism_files_make(*, folder: Path, people: int = 10, conversations_per_person: int = 8,
                           turns: int = 1, dimension: str = "format", majority_share: float = 0.7,
                           side_weight: float | None = None, noise: float = 3.0,
                           seed: int = 0) -> dict[str, Path]:
    """PRISM-format files whose scores come from simulated people with a hidden style preference.

    Two opposing groups on ``dimension``, each person with side tastes of ``side_weight`` (see
    ``personas.sample_population``; a named population such as "two+sides" brings its own); every
    turn's candidates are short template replies in contrasting styles, rated 1-100 by the
    person's rule. Besides survey/conversations/utterances.jsonl, ``hidden_groups.jsonl``
    says which group each person is in ({"user_id", "group"} per line): the ground
    truth a real dataset does not have, for reporting results per group.
    """
    from users.synthetic.personas import population_shape, sample_population
    from users.synthetic.prompts import PRISM_PROMPTS, load_prompts
    from users.synthetic.replies import contrasting_styles, generate_reply
    from users.synthetic.rule import score

    dimension, side_weight = population_shape(dimension, side_weight)
    rng = random.Random(seed)
    prompts = load_prompts(PRISM_PROMPTS)
    personas = sample_population(people, dimension=dimension, majority_share=majority_share,
                                 side_weight=side_weight, noise=noise, seed=seed, prefix=f"s{seed}-person")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.jsonl" for name in ("survey", "conversations", "utterances", "hidden_groups")}
    follow_ups = ["Can you say more?", "What would you do first?", "Why is that?", "Could you give an example?"]
    with open(paths["survey"], "w", encoding="utf-8") as survey_out, \
            open(paths["conversations"], "w", encoding="utf-8") as conv_out, \
            open(paths["utterances"], "w", encoding="utf-8") as utt_out, \
            open(paths["hidden_groups"], "w", encoding="utf-8") as groups_out:
        for persona in personas:
            uid = persona.user_id
            survey_out.write(json.dumps(_survey(rng, uid, conversations_per_person), ensure_ascii=False) + "\n")
            groups_out.write(json.dumps({"user_id": uid, "group": persona.group}) + "\n")

            def rated(turn: int, prompt: str, n: int, rng: random.Random, persona=persona):
                styles = contrasting_styles(rng, dimension, n)
                texts = [generate_reply(prompt, style, rng, detailed_sentences=(2, 2)) for style in styles]
                return [(text, score(persona, text, rng)) for text in texts]

            for c in range(conversations_per_person):
                plan = [4] + [2] * (turns - 1)
                record, utterances = _conversation(rng, f"{uid}-c{c}", uid, plan, 0.0, 0.0, replies=rated,
                                                   opening=rng.choice(prompts),
                                                   follow_up=lambda r: r.choice(follow_ups))
                conv_out.write(json.dumps(record, ensure_ascii=False) + "\n")
                for u in utterances:
                    utt_out.write(json.dumps(u, ensure_ascii=False) + "\n")
    return paths
