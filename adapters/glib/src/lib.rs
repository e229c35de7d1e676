//! oneloop inside a GLib main context: GTK applications.
