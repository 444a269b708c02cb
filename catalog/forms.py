from __future__ import annotations

from typing import Any

from django import forms

from catalog.models import Domain, Team, Visibility


class FineTuneForm(forms.Form):
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        to_field_name="slug",
        label="Team",
        help_text="The job, the dataset and the new model belong to this team.",
    )
    base = forms.ChoiceField(label="Base model", help_text="A pretrained encoder or an earlier text classifier.")
    name = forms.CharField(
        max_length=200,
        label="New model name",
        help_text="A new model, or a new version of your team's model of that name.",
    )
    file = forms.FileField(
        label="Labelled data (CSV or JSONL)", help_text="One example per row, with a text column and a label column."
    )
    dataset_name = forms.CharField(
        max_length=200, required=False, label="Dataset name", help_text="Defaults to the file name."
    )
    text_column = forms.CharField(max_length=100, initial="text")
    label_column = forms.CharField(max_length=100, initial="label")
    domain = forms.ModelChoiceField(
        queryset=Domain.objects.all(),
        to_field_name="path",
        help_text="What your data is about; the new model is filed under it (not under the base model's domain).",
    )
    recipe = forms.ChoiceField(
        choices=[
            ("default", "Default — chosen for your data and time budget"),
            ("auto", "Auto — try 2-3 recipes, keep the best on inner validation"),
            ("manual", "Manual — exactly the hyperparameters below"),
        ],
        required=False,
        initial="default",
        label="Recipe",
        help_text="Default and auto warm the head up on the frozen encoder, unfreeze its top layers and stop early "
        "on a validation split carved from the training part; the hyperparameters below are used only with manual.",
    )
    time_budget_s = forms.IntegerField(
        min_value=10,
        max_value=86400,
        initial=300,
        required=False,
        label="Time budget (s)",
        help_text="Training time the default and auto recipes plan for.",
    )
    epochs = forms.IntegerField(min_value=1, max_value=200, initial=20)
    learning_rate = forms.FloatField(
        min_value=1e-6,
        max_value=1.0,
        initial=3e-2,
        label="Head learning rate",
        help_text="Peak rate; it decays to zero on a cosine.",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=1024, initial=32)
    max_length = forms.IntegerField(min_value=8, max_value=512, initial=128, label="Max tokens")
    unfreeze_layers = forms.IntegerField(
        min_value=0, max_value=48, initial=0, label="Unfrozen encoder layers", help_text="0 trains the new head only."
    )
    encoder_learning_rate = forms.FloatField(
        min_value=1e-7, max_value=1e-2, initial=3e-5, label="Encoder learning rate"
    )
    holdout = forms.FloatField(min_value=0.05, max_value=0.5, initial=0.2, label="Held-out share")
    seed = forms.IntegerField(min_value=0, initial=0)
    min_precision = forms.FloatField(
        min_value=0.0,
        max_value=100.0,
        initial=0.0,
        label="Quality gate %",
        help_text="Minimum held-out macro precision, in %, for the version to be ready.",
    )
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.INTERNAL)

    HYPERPARAMETERS = (
        "epochs",
        "learning_rate",
        "batch_size",
        "max_length",
        "unfreeze_layers",
        "encoder_learning_rate",
        "holdout",
        "seed",
    )

    DEFAULT_DOMAIN = "general"

    def __init__(
        self,
        *args: Any,
        base_choices: list[tuple[str, str]],
        teams: list[Team] | None = None,
        choose_team: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        base = self.fields["base"]
        assert isinstance(base, forms.ChoiceField)
        base.choices = base_choices
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = Team.objects.filter(pk__in=[t.pk for t in teams or []]).order_by("name")
        if choose_team:
            # A superuser (or a member of several teams) picks one explicitly.
            team.empty_label = "Choose a team…"
        else:
            team.empty_label = None
            team.required = False  # the user's only team
            self.initial.setdefault("team", teams[0].slug if teams else None)
        self.sole_team = None if choose_team or not teams else teams[0]
        self.initial.setdefault("domain", self.DEFAULT_DOMAIN)

    def clean_team(self) -> Team | None:
        return self.cleaned_data.get("team") or self.sole_team

    def min_precision_fraction(self) -> float:
        """The gate as the services take it (0–1); the form shows % like every page."""
        return float(self.cleaned_data["min_precision"]) / 100

    RECIPE_CHOSEN = ("epochs", "learning_rate", "batch_size", "unfreeze_layers", "encoder_learning_rate")

    def hyperparameters(self) -> dict[str, Any]:
        """The service's hyperparameters: with recipe default/auto, the knobs the recipe chooses are left
        out; a form posted without a recipe (an older page, a script) is manual, as before."""
        recipe = self.cleaned_data.get("recipe") or "manual"
        values = {k: self.cleaned_data[k] for k in self.HYPERPARAMETERS}
        if recipe == "manual":
            return values
        values = {k: v for k, v in values.items() if k not in self.RECIPE_CHOSEN}
        budget = self.cleaned_data.get("time_budget_s")
        return values | {"recipe": recipe} | ({"time_budget_s": budget} if budget else {})
