"""Code the README shows, kept here so a test can run it as shown."""
