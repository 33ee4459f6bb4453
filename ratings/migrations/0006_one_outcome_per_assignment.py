"""One outcome per assignment: a vote or a skip, never both (issue 14)."""

from django.db import migrations, models

# An assignment already voted on (its rater's vote on its pair, of its kind) records when; one
# both voted on and skipped (before this constraint) keeps the skip, and its vote stays.
BACKFILL = """
UPDATE ratings_assignment a SET voted_at = v.created_at
FROM ratings_vote v
WHERE v.rater_id = a.rater_id AND v.pair_id = a.pair_id AND a.skipped_at IS NULL
  AND (CASE WHEN a.kind = 'repeat' THEN v.kind = 'repeat' ELSE v.kind <> 'repeat' END)
"""


class Migration(migrations.Migration):
    dependencies = [("ratings", "0005_scores_grants_imports")]

    operations = [
        migrations.AddField(
            model_name="assignment",
            name="voted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="assignment",
            constraint=models.CheckConstraint(
                condition=models.Q(voted_at__isnull=True) | models.Q(skipped_at__isnull=True),
                name="assignment_one_outcome",
            ),
        ),
    ]
