/* The page's shared state and its small event bus.
   Owns: window.swirl (read by the tests and by curious visitors), $() and on()/emit(), the way panels
   hear about each other without importing each other. Events: "schedule" (the schedule loaded),
   "model" (GET /model answered), "t" (the forward slider's t changed), "forward" (new forward points on screen). */

export const $ = (id) => document.getElementById(id);

export const swirl = {
  T: null,
  schedule: null,
  model: null,
  ready: { schedule: false, model: false, forward: false, reference: false, sample: false },
  forwardRequests: 0,
  forwardResponses: 0,
  forwardDraws: 0,
  forwardT: null, // t of the points on screen
  sliderT: null,
  scheduleDraws: 0,
  sampleRequests: 0,
  sampleResponses: 0,
  lastSample: null, // {n, seed, sampler, steps, eta} of the animation on screen
  frameIndex: 0,
  frameCount: 0,
  frameT: null,
  frameLabel: "", // the label drawn on the reverse-process canvas
  framesDrawn: 0,
  chainDone: false, // the frames on screen are a whole chain, x_T to x_0 (the stream said "done")
  playing: false,
  sampleDone: false, // the animation has reached the last frame
  streaming: false, // frames are arriving from /sample/stream
  stream: null, // {started, firstFrame, done} in ms since the click, and frames, of the last stream
  studentSteps: [],
  errors: {},
};
window.swirl = swirl;

const listeners = new Map();

export function on(name, listener) {
  if (!listeners.has(name)) listeners.set(name, []);
  listeners.get(name).push(listener);
}

export function emit(name, detail) {
  for (const listener of listeners.get(name) || []) listener(detail);
}
