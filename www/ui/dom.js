// The one DOM helper of the library's screens (the demo, the Tracker Capture loader, ui/).

/**
 * Creates an element: `attrs` are attributes (`true` sets an empty one; `false`, null and
 * undefined are left out), `text` the text content, `on<event>` listeners; children are nodes or
 * texts, nested arrays flattened, null, undefined and false left out.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'text') element.textContent = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}
