"""The start-a-run form: the data, the algorithm, the user model and the
hyperparameters, with the paper's PRISM settings as defaults (the view starts it from settings read off the
data, each with its reason beside the field: ``trainer.data_defaults``)."""

from django import forms

from alignment_site import glossary
from trainer.core.pairing import DEFAULT as DEFAULT_PAIRING
from trainer.core.pairing import STRATEGIES as PAIRINGS
from trainer.core.tracking import TRACKERS, parse_report_to

ALGORITHMS = {
    # name: (loss, personalized)
    "p-dpo": ("dpo", True),
    "p-ipo": ("ipo", True),
    "p-simpo": ("simpo", True),
    "p-hinge": ("hinge", True),
    "dpo": ("dpo", False),
}


class RunForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    # --- data ---
    min_pairs = forms.IntegerField(min_value=1, initial=1, label="Only people with at least this many pairs")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            label="Conversations from")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to")
    min_margin = forms.IntegerField(min_value=1, max_value=99, initial=1, label="Minimum score margin of a pair")
    pairing = forms.ChoiceField(choices=list(PAIRINGS.items()), initial=DEFAULT_PAIRING, required=False,
                                label="Pairs from each turn's ratings",
                                help_text="Best versus rest: the chosen reply against each other one. All ordered "
                                          "pairs: also the runners-up against the lower-rated. Weighted: best versus "
                                          "rest, a wide margin counting more.")
    exclude_flagged = forms.BooleanField(required=False, initial=False,
                                         label="Leave out people the raters page flags (one score for everything, "
                                               "faster than reading, no pattern)")
    unseen_fraction = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.1,
                                       label="Share of people held out as unseen")
    test_fraction = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.2,
                                     label="Share of each seen person's conversations held out")
    # --- algorithm ---
    algorithm = forms.ChoiceField(choices=[(k, glossary.method(*v)) for k, v in ALGORITHMS.items()], initial="p-dpo",
                                  label="Method")
    user_model = forms.ChoiceField(choices=[("individual", "Individual"), ("cluster", "Cluster (low rank)")],
                                   initial="individual")
    n_clusters = forms.IntegerField(min_value=1, max_value=256, initial=10, label="Clusters K")
    n_user_tokens = forms.IntegerField(min_value=1, max_value=64, initial=10, label="User vectors T_u")
    with_baseline = forms.BooleanField(required=False, initial=True,
                                       label="Also train plain DPO on the same data, for comparison")
    repeats = forms.IntegerField(min_value=1, max_value=10, initial=1, required=False,
                                 label="Repeat with this many seeds (seed, seed + 1, ...; the report pools them)")
    # --- hyperparameters ---
    beta = forms.FloatField(min_value=0.001, max_value=100, initial=0.5)
    alpha = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.5, label="alpha (weight of the personal term)")
    lr_lora = forms.FloatField(min_value=1e-8, max_value=1.0, initial=5e-5,
                               label=glossary.HYPERPARAMETER_LABELS["lr_lora"])
    lr_user = forms.FloatField(min_value=1e-8, max_value=10.0, initial=5e-5, label="User model learning rate")
    lr_mixture = forms.FloatField(min_value=0.0, max_value=10.0, initial=0.0, required=False,
                                  label="Cluster mixture-weight learning rate (0 = the user model's)")
    warmup_steps = forms.IntegerField(min_value=0, initial=150)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=32, label="Effective batch size")
    micro_batch_size = forms.IntegerField(min_value=1, max_value=512, initial=8)
    epochs = forms.FloatField(min_value=0.01, max_value=1000, initial=1.0)
    lora_r = forms.IntegerField(min_value=1, max_value=256, initial=8, label=glossary.HYPERPARAMETER_LABELS["lora_r"])
    lora_alpha = forms.IntegerField(min_value=1, max_value=1024, initial=16,
                                    label=glossary.HYPERPARAMETER_LABELS["lora_alpha"])
    lora_dropout = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.05,
                                    label=glossary.HYPERPARAMETER_LABELS["lora_dropout"])
    max_prompt_length = forms.IntegerField(min_value=8, initial=470)
    max_length = forms.IntegerField(min_value=16, initial=770)
    gradient_checkpointing = forms.BooleanField(required=False, initial=False,
                                                label="Gradient checkpointing (less memory, about 30 % slower)")
    bf16 = forms.BooleanField(required=False, initial=False, label="bf16 autocast (on GPUs that compute it)")
    processes = forms.IntegerField(min_value=1, max_value=64, initial=1, required=False,
                                   label="Processes (one per GPU; CPU processes on a CPU worker)")
    launch_config = forms.CharField(max_length=500, required=False,
                                    label="accelerate config file on the worker (optional; plain DDP without)")
    seed = forms.IntegerField(initial=42)
    log_every = forms.IntegerField(min_value=1, initial=1, label="Log metrics every N steps")
    checkpoint_every = forms.IntegerField(min_value=0, initial=20, label="Checkpoint every N steps (0 = never)")
    diagnostics_every = forms.IntegerField(min_value=0, initial=10,
                                           label="Gradient entanglement every N steps (0 = never)")
    report_to = forms.MultipleChoiceField(
        choices=list(TRACKERS.items()), required=False,
        widget=forms.CheckboxSelectMultiple, label="Also send the metrics to (stored in TRACKING_DIR on the worker)")
    eval_max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=96,
                                             label="Evaluation: new tokens per generated reply")

    # The data filter a form starts with: what the settings read off the data are read from.
    DATA_FILTER_FIELDS = ("min_pairs", "pairing", "unseen_fraction", "test_fraction")

    def __init__(self, *args, reasons: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        from django.conf import settings

        self.fields["report_to"].initial = parse_report_to(settings.REPORT_TO)  # the site's default (REPORT_TO)
        self.explain(reasons or {})

    def explain(self, reasons: dict) -> None:
        """Put each setting's reason (read off the data, as ``trainer.core.defaults`` words it) beside it."""
        for name, (value, reason) in reasons.items():
            if name in self.fields:
                self.fields[name].help_text = f"{value:g} read off the data: {reason}."
                self.fields[name].widget.attrs["aria-describedby"] = f"id_{name}-reason"

    @staticmethod
    def change_button(change: dict | None) -> dict | None:
        """The button that puts a change that fits (from the memory check) into the form: its label and the
        value it submits as ``apply`` ("micro_batch_size=2,gradient_checkpointing=on")."""
        if not change:
            return None
        from trainer.core.fit import describe_change

        value = ",".join(f"{k}={'on' if v is True else v}" for k, v in change.items())
        return {"label": describe_change(change), "value": value}

    @staticmethod
    def data_with_change(data):
        """The submitted form data with the ``apply`` button's change written into it (the data as is without
        one); only the form's own fields are changed."""
        data = data.copy()
        for item in (data.pop("apply", None) or [""])[0].split(","):
            key, _, value = item.partition("=")
            if key in RunForm.base_fields:
                data[key] = value
        return data

    @classmethod
    def initial_data_filter(cls) -> dict:
        return {name: cls.base_fields[name].initial for name in cls.DATA_FILTER_FIELDS}

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        data["processes"] = data.get("processes") or 1  # left empty: one process
        data["repeats"] = data.get("repeats") or 1
        if data["batch_size"] % data["micro_batch_size"]:
            self.add_error("micro_batch_size", "The batch size must be a whole multiple of the micro-batch size.")
        elif data["batch_size"] % (data["processes"] * data["micro_batch_size"]):
            self.add_error("processes", f"The batch size ({data['batch_size']}) must split into {data['processes']} "
                                        f"processes of whole micro-batches of {data['micro_batch_size']}.")
        path = data.get("launch_config", "").strip()
        if path and (not path.startswith("/") or not path.endswith((".yaml", ".yml", ".json"))):
            self.add_error("launch_config", "Give the absolute path of an accelerate config file (.yaml or .json) "
                                            "on the train worker's machine, as `accelerate config` writes it.")
        if data["max_prompt_length"] >= data["max_length"]:
            self.add_error("max_prompt_length", "The prompt limit must leave room for the reply within the total.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data

    def config(self) -> dict:
        """The TrainConfig fields this form sets (the rest keep their defaults)."""
        d = self.cleaned_data
        loss, personalized = ALGORITHMS[d["algorithm"]]
        config = {key: d[key] for key in (
            "beta", "lr_lora", "lr_user", "warmup_steps", "batch_size", "micro_batch_size", "epochs", "lora_r",
            "lora_alpha", "lora_dropout", "max_prompt_length", "max_length", "seed", "log_every",
            "checkpoint_every", "diagnostics_every", "n_user_tokens", "n_clusters", "eval_max_new_tokens")}
        config["lr_mixture"] = d["lr_mixture"] or 0.0  # left empty: the user model's rate
        config["report_to"] = ",".join(d.get("report_to") or [])
        config["gradient_checkpointing"] = bool(d.get("gradient_checkpointing"))
        config["bf16"] = True if d.get("bf16") else None  # unticked: the device's default
        config.update(loss=loss, user_model=d["user_model"] if personalized else "none",
                      alpha=d["alpha"] if personalized else 0.0)
        return config

    def data_filter(self) -> dict:
        d = self.cleaned_data
        return {"min_pairs": d["min_pairs"], "min_margin": d["min_margin"],
                "pairing": d.get("pairing") or DEFAULT_PAIRING, "exclude_flagged": bool(d.get("exclude_flagged")),
                "since": d["since"].isoformat() if d.get("since") else None,
                "until": d["until"].isoformat() if d.get("until") else None,
                "unseen_fraction": d["unseen_fraction"], "test_fraction": d["test_fraction"]}

    @classmethod
    def initial_from(cls, run) -> dict:
        """The form's values that start ``run`` again: its settings, data filter and processes."""
        config = run.config
        personalized = config.get("user_model", "none") != "none"
        algorithm = next((k for k, v in ALGORITHMS.items() if v == (config.get("loss", "dpo"), personalized)),
                         "p-dpo")
        values = {k: v for k, v in config.items() if k in cls.base_fields and k != "user_model"}
        values.update({k: v for k, v in (run.data_filter or {}).items() if k in cls.base_fields and v is not None})
        if personalized:
            values["user_model"] = config["user_model"]
        values["report_to"] = parse_report_to(config.get("report_to"))
        values.update(algorithm=algorithm, name=f"{run} (again)"[:120], processes=run.processes,
                      launch_config=run.launch_config, bf16=bool(config.get("bf16")),
                      with_baseline=run.baseline_id is not None, lr_mixture=config.get("lr_mixture") or None)
        return values

    def launch(self) -> dict:
        """How many processes train the run, and the accelerate config file they are launched with."""
        return {"processes": self.cleaned_data["processes"],
                "launch_config": self.cleaned_data.get("launch_config", "").strip()}

    def validated_config(self) -> dict:
        """Check the combination with the training library's own rules (no torch needed)."""
        from trainer.core.config import TrainConfig

        try:
            return TrainConfig.from_dict(self.config()).to_dict()
        except (ValueError, TypeError) as exc:
            raise forms.ValidationError(str(exc)) from exc
