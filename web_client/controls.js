// The Controls panel: gaze, head distance and emotion, turned into partial control updates.
// It knows the panel's DOM only; posting the updates is the caller's job (see bindControls).

const $ = (id) => document.getElementById(id);

const SLIDERS = {
  "gaze-yaw": "gaze_yaw",
  "gaze-pitch": "gaze_pitch",
  "head-distance": "head_distance",
  "emotion-strength": "emotion_strength",
};

function setSlider(id, value) {
  $(id).value = value;
  $(`${id}-value`).textContent = Number(value).toFixed(2);
}

function setFreeGaze(free) {
  $("free-gaze").checked = free;
  $("gaze-yaw").disabled = $("gaze-pitch").disabled = free;
}

function markEmotion(emotion) {
  for (const b of $("emotions").children) b.classList.toggle("active", b.dataset.emotion === emotion);
}

// Calls send(partial) on every change; partial is a subset of the POST /controls body.
export function bindControls(send) {
  for (const [id, control] of Object.entries(SLIDERS)) {
    $(id).addEventListener("input", () => {
      setSlider(id, $(id).value);
      send({ [control]: Number($(id).value) });
    });
  }
  $("free-gaze").addEventListener("change", () => {
    const free = $("free-gaze").checked;
    setFreeGaze(free);
    // null hands the gaze back to the motion source; otherwise hold the sliders' values.
    const value = (id) => (free ? null : Number($(id).value));
    send({ gaze_yaw: value("gaze-yaw"), gaze_pitch: value("gaze-pitch") });
  });
  for (const button of $("emotions").children) {
    button.addEventListener("click", () => {
      markEmotion(button.dataset.emotion);
      send({ emotion: button.dataset.emotion });
    });
  }
}

// Shows a session's controls (full object from the server): a new session starts from them.
export function applyControls(c) {
  setFreeGaze(c.gaze_yaw === null && c.gaze_pitch === null);
  setSlider("gaze-yaw", c.gaze_yaw ?? 0);
  setSlider("gaze-pitch", c.gaze_pitch ?? 0);
  setSlider("head-distance", c.head_distance);
  setSlider("emotion-strength", c.emotion_strength);
  markEmotion(c.emotion);
}
