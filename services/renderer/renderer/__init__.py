"""Likeness renderer: styled headshots from base model + subject LoRA."""
