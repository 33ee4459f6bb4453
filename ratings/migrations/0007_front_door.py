"""The front door (issue 14): panel study id and id form, open sign-ups, a cap on raters."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ratings", "0006_one_outcome_per_assignment")]

    operations = [
        migrations.AddField(
            model_name="study",
            name="panel_study_id",
            field=models.CharField(
                blank=True,
                help_text="The panel's id of this study; a panel link with another study id "
                "is refused.",
                max_length=120,
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="panel_id_regex",
            field=models.CharField(
                blank=True,
                help_text="The form of the panel's participant ids, as a regular expression "
                "matched whole (Prolific: [0-9a-f]{24}); empty accepts letters, digits and "
                ". _ : @ -.",
                max_length=200,
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="open_to_signups",
            field=models.BooleanField(
                default=False,
                help_text="Anyone signed in may join from the study's link; otherwise raters "
                "come by invite or panel link only.",
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="max_raters",
            field=models.PositiveIntegerField(
                blank=True, help_text="No new raters past this many; empty: no cap.", null=True
            ),
        ),
    ]
