"""What the run watches beyond pass / fail: warnings sent on the workspace's alert channels (:mod:`.warnings`)."""
