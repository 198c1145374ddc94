"""How the trained person is named in prompts: a rare token bound to a class noun (DreamBooth).

"ohwx" is split by CLIP into sub-word pieces that carry almost no prior meaning, so the LoRA can bind the
subject's identity to it without fighting an existing concept (unlike "sks", which is a rifle to SD 1.5).
"""

from __future__ import annotations

INSTANCE_TOKEN = "ohwx"  # noqa: S105 (a prompt token, not a secret)
CLASS_NOUN = "person"
SUBJECT_PHRASE = f"{INSTANCE_TOKEN} {CLASS_NOUN}"
INSTANCE_PROMPT = f"a photo of {SUBJECT_PHRASE}"
#: Prior preservation's prompt: the class without the identifier, what the base model already knows.
CLASS_PROMPT = f"a photo of {CLASS_NOUN}"
