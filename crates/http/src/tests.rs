//! Face tests through `oneshot`: no socket, the real router and real models.
