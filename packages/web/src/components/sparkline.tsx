/** A small line chart of a series (oldest first) with its last value marked; no axes, a title tells the range. */
export function Sparkline(props: { values: number[]; label: string; format: (value: number) => string; width?: number; height?: number }) {
  const { values, label, format } = props;
  const width = props.width ?? 96;
  const height = props.height ?? 32;
  if (values.length === 0) return <span class="muted small">no runs yet</span>;
  const max = Math.max(...values);
  const min = Math.min(...values);
  const span = max - min || 1;
  const step = values.length > 1 ? (width - 6) / (values.length - 1) : 0;
  // Laid out from the right: the newest point sits next to its value, however few runs there are.
  const points = values.map((value, i) => [width - 3 - (values.length - 1 - i) * step, height - 3 - ((value - min) / span) * (height - 6)] as const);
  const last = points[points.length - 1]!;
  const title = `${label}: last ${format(values[values.length - 1]!)}, min ${format(min)}, max ${format(max)} over ${values.length} runs`;
  return (
    <span class="sparkline" title={title} aria-label={title} role="img">
      <svg width={width} height={height} viewBox={`0 0 ${width} ${height}`}>
        <polyline class="sparkline-line" fill="none" points={points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')} />
        <circle class="sparkline-dot" cx={last[0]} cy={last[1]} r="2.5" />
      </svg>
      <span class="sparkline-value">{format(values[values.length - 1]!)}</span>
    </span>
  );
}
